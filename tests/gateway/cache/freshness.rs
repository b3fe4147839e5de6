//! Freshness: stale-while-revalidate, stale-if-error, and the client's no-cache and no-store.

use super::*;

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let mock = versioned_mock().await;
    let overlay = "[cache]\nttl = \"200ms\"\nstale_while_revalidate = \"60s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale: Vec<TestResponse> = futures_join(&gw, 5).await;
    for response in &stale {
        assert_eq!(version(response), 1, "the stale page is served at once");
        let status = cache_status(response);
        assert!(
            status.contains("hit") && status.contains("detail=stale-while-revalidate"),
            "{status}"
        );
        assert!(status.contains("ttl=-"), "{status}");
    }
    mock.wait_for_hits(2).await;
    // The refresh carries the trace id of the request that started it.
    let refresh_trace_id = mock.requests()[1].header("x-traceid").map(str::to_owned);
    assert!(
        stale
            .iter()
            .any(|r| Some(r.header("x-traceid")) == refresh_trace_id.as_deref()),
        "{refresh_trace_id:?}"
    );
    within("the refreshed page", async {
        loop {
            let response = gw.client.get(TASK_LIST).await;
            if version(&response) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(mock.hits(), 2, "one background refresh for the key");
}

async fn futures_join(gw: &TestGateway, n: usize) -> Vec<TestResponse> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(TASK_LIST).await })
        })
        .collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn stale_if_error_covers_upstream_failures_but_not_business_errors() {
    let mode = Arc::new(AtomicUsize::new(0));
    let state = Arc::clone(&mode);
    let mock = Mock::start(move |seen| match state.load(Ordering::SeqCst) {
        0 => page_for(seen, 1),
        1 => Reply::json(503, r#"{"code":13000500,"msg":"down"}"#),
        2 => Reply::drop_connection(),
        3 => Reply::json(400, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#),
        4 => Reply::ok().delay(Duration::from_secs(5)),
        _ => Reply::json(400, r#"{"code":13000201,"msg":"bad request"}"#),
    })
    .await;
    // The throttling cooldown is off: this test pins stale-if-error for each kind of failure,
    // APIG.0308 included (the cooldown that follows one is tests/gateway/quota.rs's).
    let overlay =
        "[cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"60s\"\n\
                   [upstream]\ntimeout = \"500ms\"\nthrottle_cooldown = \"0s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    for (failure, fwd) in [
        (1, "fwd-status=503"),
        (2, "fwd=miss"),
        (3, "fwd-status=400"),
        (4, "fwd=miss"),
    ] {
        mode.store(failure, Ordering::SeqCst);
        let response = gw.client.get(TASK_LIST).await;
        assert_eq!(
            response.status,
            200,
            "failure {failure}: {}",
            response.text()
        );
        assert_eq!(version(&response), 1);
        let status = cache_status(&response);
        assert!(
            status.contains("detail=stale-if-error") && status.contains(fwd),
            "{failure}: {status}"
        );
    }
    mode.store(5, Ordering::SeqCst);
    let response = gw.client.get(TASK_LIST).await;
    assert_eq!(
        response.status, 400,
        "a business error is passed through, not masked"
    );
    assert_eq!(response.json()["code"], "13000201");
}

#[tokio::test]
async fn client_no_cache_refreshes_and_no_store_stores_nothing() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    for headers in [
        [("cache-control", "no-cache")],
        [("cache-control", "max-age=0")],
        [("cache-control", "max-age=00")],
        [("cache-control", "max-age=\"0\"")],
        [("pragma", "no-cache")],
    ] {
        let before = mock.hits();
        let response = gw.client.get_with(TASK_LIST, &headers).await;
        assert_eq!(
            cache_status(&response),
            "koodrive-gateway; fwd=request; stored"
        );
        assert_eq!(mock.hits(), before + 1);
        assert_eq!(
            version(&gw.client.get(TASK_LIST).await),
            version(&response),
            "stored for later"
        );
    }
    let stored = version(&gw.client.get(TASK_LIST).await);
    let response = gw
        .client
        .get_with(TASK_LIST, &[("cache-control", "no-store")])
        .await;
    assert_eq!(cache_status(&response), "koodrive-gateway; fwd=request");
    assert_eq!(version(&response), stored + 1);
    assert_eq!(
        version(&gw.client.get(TASK_LIST).await),
        stored,
        "no-store stored nothing"
    );
}
