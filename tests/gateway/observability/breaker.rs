//! The breaker's metrics say what it does: openings, half-open probes.

use super::*;

/// A gateway whose breaker opens on one failure (cooldown 200 ms), in front of a mock that fails
/// `/fail`, holds `/slow` until the returned `Notify` is told, and answers the rest.
async fn breaker_behind_a_holding_mock() -> (Mock, TestGateway, Arc<Notify>) {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |seen| match seen.uri.path() {
        p if p.ends_with("/fail") => Reply::json(500, r#"{"code":"1","msg":"boom"}"#),
        p if p.ends_with("/slow") => Reply::ok().hold(Arc::clone(&held)),
        _ => Reply::ok(),
    })
    .await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 1\nbreaker_cooldown = \"200ms\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    (mock, gw, hold)
}

/// A half-open probe whose client hangs up "passes its turn to the next request"
/// (README, Fault tolerance): nothing was learnt about KooDrive. The breaker nevertheless
/// counts a new `open` transition, sets `breaker_open` back to 1 and logs "circuit breaker open:
/// KooDrive is failing" (`Permit::drop` calls `transition(OPEN, "open")`).
#[tokio::test]
async fn a_probe_that_passes_its_turn_is_not_a_new_opening() {
    let (mock, gw, hold) = breaker_behind_a_holding_mock().await;

    // One 500: the breaker opens (threshold 1).
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/files/fail").await.status,
        500
    );
    let opened = gw.metrics().await;
    assert_eq!(
        sum(
            &opened,
            "koodrive_gateway_breaker_transitions_total",
            &["open"]
        ),
        1.0
    );
    // The cooldown is configured time: wait it out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The probe: its client hangs up while KooDrive holds the answer.
    let stream = raw_get(&gw, "/koodrive/ose/v1/files/slow").await;
    mock.wait_for_hits(2).await;
    drop(stream);
    let after = metrics_until(&gw, "the probe's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["status_class=\"4xx\""],
        ) >= 1.0
    })
    .await;
    hold.notify_waiters();

    let opens = sum(
        &after,
        "koodrive_gateway_breaker_transitions_total",
        &["reason=\"open\""],
    );
    assert_eq!(
        opens,
        1.0,
        "a probe whose client left was counted as a new breaker opening \
         (breaker_open = {}):\n{}",
        sum(&after, "koodrive_gateway_breaker_open", &[]),
        dump(&after, "koodrive_gateway_breaker")
    );
}

/// While the breaker is half-open and its probe is out, every other request is
/// refused with a 503 `GATEWAY_UPSTREAM_CIRCUIT_OPEN`, yet `breaker_open` reads 0
/// (`Breaker::transition` sets it to `to == OPEN`): a dashboard shows the breaker closed while
/// clients are told the circuit is open, for as long as the probe takes (up to
/// `upstream.timeout`).
#[tokio::test]
async fn breaker_open_says_so_while_requests_are_refused() {
    let (mock, gw, hold) = breaker_behind_a_holding_mock().await;
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/files/fail").await.status,
        500
    );
    // The cooldown is configured time: wait it out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The probe, held by KooDrive.
    let client = gw.client.clone();
    let probe = tokio::spawn(async move { client.get("/koodrive/ose/v1/files/slow").await });
    mock.wait_for_hits(2).await;
    let refused = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    let metrics = gw.metrics().await;
    hold.notify_waiters();
    assert_eq!(within("the probe", probe).await.unwrap().status, 200);
    assert_eq!(
        sum(&metrics, "koodrive_gateway_breaker_open", &[]),
        1.0,
        "a request was just refused as GATEWAY_UPSTREAM_CIRCUIT_OPEN:\n{}",
        dump(&metrics, "koodrive_gateway_breaker")
    );
}
