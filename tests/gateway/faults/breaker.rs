//! The circuit breaker: what opens it, what it serves while open, what closes it.

use super::*;

#[tokio::test]
async fn the_breaker_fails_fast_serves_stale_then_closes_after_a_good_probe() {
    let server = FaultServer::start(Fault::Healthy).await;
    let overlay = r#"
        [upstream]
        breaker_failures = 3
        breaker_cooldown = "500ms"
        [cache]
        ttl = "100ms"
        stale_while_revalidate = "0s"
    "#;
    let gw = TestGateway::for_mock_url(&server.url(), overlay).await;
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.set(Fault::Status(503)).await;
    for _ in 0..3 {
        assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 503);
    }
    let hits = server.hits();
    let fast = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(fast.status, 503);
    assert_eq!(fast.json()["code"], "GATEWAY_UPSTREAM_CIRCUIT_OPEN");
    assert!(fast.headers.contains_key("retry-after"));
    let stale = gw.client.get(TASK_LIST).await;
    assert_eq!(
        stale.status,
        200,
        "stale pages are still served while open: {}",
        stale.text()
    );
    assert!(stale.header("cache-status").contains("stale-if-error"));
    assert_eq!(server.hits(), hits, "no upstream call while open");
    let metrics = gw.admin.get("/metrics").await.text();
    assert!(
        metrics.contains("koodrive_gateway_breaker_open 1"),
        "{metrics}"
    );

    server.set(Fault::Healthy).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/task/1").await.status,
        200,
        "the probe"
    );
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/task/1").await.status,
        200,
        "closed again"
    );
    let metrics = gw.admin.get("/metrics").await.text();
    assert!(
        metrics.contains("koodrive_gateway_breaker_open 0"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"koodrive_gateway_breaker_transitions_total{reason="open"} 1"#));
}

/// Only the probe decides: a request let through before the breaker opened, answered well after
/// it opened, leaves it open for the whole cooldown.
#[tokio::test]
async fn a_late_success_leaves_an_open_breaker_open_until_the_probe() {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let mock = Mock::start(move |seen| match seen.uri.path() {
        p if p.ends_with("/slow") => Reply::ok().hold(Arc::clone(&held)),
        p if p.ends_with("/fail") => Reply::json(500, r#"{"code":1,"msg":"failing"}"#),
        _ => Reply::ok(),
    })
    .await;
    let overlay = r#"
        [upstream]
        breaker_failures = 1
        breaker_cooldown = "60s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let client = gw.client.clone();
    let late = tokio::spawn(async move { client.get("/koodrive/ose/v1/task/slow").await });
    mock.wait_for_hits(1).await;
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/task/fail").await.status,
        500
    );
    let open = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(open.json()["code"], "GATEWAY_UPSTREAM_CIRCUIT_OPEN");

    // The request admitted while closed now succeeds.
    release.notify_one();
    assert_eq!(within("the late answer", late).await.unwrap().status, 200);
    let hits = mock.hits();
    let during_cooldown = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(
        during_cooldown.json()["code"],
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN",
        "closed by a success that was not the probe"
    );
    assert_eq!(mock.hits(), hits, "KooDrive called within the cooldown");
    assert_eq!(gw.metrics().await["koodrive_gateway_breaker_open"], 1.0);
}

/// A body that stalls or is reset after a good head is a failure of KooDrive's like any other:
/// with the breaker opening after one failure, the next request is refused without a call.
#[tokio::test]
async fn a_response_body_that_stalls_or_is_reset_counts_against_koodrive() {
    for fault in [Fault::StallMidBody, Fault::ResetMidBody] {
        let server = FaultServer::start(fault).await;
        let overlay = r#"
            [upstream]
            timeout = "1s"
            breaker_failures = 1
            breaker_cooldown = "60s"
        "#;
        let gw = TestGateway::for_mock_url(&server.url(), overlay).await;
        let (failed, elapsed) = timed(&gw, &format!("{TASK_LIST}?status=1")).await;
        check(fault, &failed, elapsed);
        let hits = server.hits();
        let next = gw.client.get(&format!("{TASK_LIST}?status=2")).await;
        assert_eq!(
            next.json()["code"],
            "GATEWAY_UPSTREAM_CIRCUIT_OPEN",
            "{fault:?}: the breaker stayed closed"
        );
        assert_eq!(server.hits(), hits, "{fault:?}: KooDrive called again");
    }
}
