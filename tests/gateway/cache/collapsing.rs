//! Concurrent identical misses collapse into one upstream request, and share its outcome.

use super::*;

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_request() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1).gate(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(&format!("{TASK_LIST}?status=1")).await })
        })
        .collect();
    mock.wait_for_hits(1).await;
    // Let the others pile up behind the flight; late ones find the stored page instead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.notify_one();
    let mut statuses = HashMap::new();
    for request in requests {
        let response = within("a collapsed response", request).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(version(&response), 1);
        let kind = cache_status(&response)
            .split("; ")
            .nth(1)
            .unwrap()
            .to_owned();
        *statuses.entry(kind).or_insert(0) += 1;
        let full = cache_status(&response);
        if full.ends_with("stored") {
            *statuses.entry("stored".into()).or_insert(0) += 1;
        } else if full.ends_with("collapsed") {
            *statuses.entry("collapsed".into()).or_insert(0) += 1;
        }
    }
    assert_eq!(mock.hits(), 1);
    let misses = statuses.get("fwd=miss").copied().unwrap_or(0);
    let hits = statuses.get("hit").copied().unwrap_or(0);
    assert_eq!(misses + hits, 200, "{statuses:?}");
    assert!(misses > 1, "waiters joined the flight: {statuses:?}");
    assert_eq!(statuses.get("stored"), Some(&1), "one leader: {statuses:?}");
    assert_eq!(
        statuses.get("collapsed"),
        Some(&(misses - 1)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_failed_leader_fails_every_waiter_with_its_error() {
    let mock = Mock::start(|_| Reply::drop_connection().delay(Duration::from_millis(300))).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(TASK_LIST).await })
        })
        .collect();
    for request in requests {
        let response = within("a waiter", request).await.unwrap();
        assert_eq!(response.status, 502);
        assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_PROTOCOL");
    }
    assert!(mock.hits() <= 2, "{} upstream calls", mock.hits());
}

/// A caller's validators and range stay with that caller: the shared fetch asks KooDrive for
/// the whole page, so a conditional request leading a flight cannot hand its 304 to waiters
/// that asked unconditionally, nor have a 304 or 206 refresh a stale page.
#[tokio::test]
async fn a_conditional_request_leading_a_flight_fetches_the_whole_page_for_everyone() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let mock = Mock::start(move |seen| {
        let conditional = ["if-none-match", "if-modified-since", "range"]
            .iter()
            .any(|name| seen.header(name).is_some());
        let reply = match conditional {
            true => Reply::json(304, ""),
            false => page_for(seen, 1),
        };
        reply.gate(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let leader = {
        let client = gw.client.clone();
        tokio::spawn(async move {
            let validators = [
                ("if-none-match", "\"etag-the-leader-has\""),
                ("if-modified-since", "Sun, 29 Nov 2026 05:00:00 GMT"),
                ("range", "bytes=0-9"),
            ];
            client.get_with(TASK_LIST, &validators).await
        })
    };
    mock.wait_for_hits(1).await;
    let waiter = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    // Let the waiter join the flight before KooDrive answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.notify_one();
    let leader = within("the leader", leader).await.unwrap();
    let waiter = within("the waiter", waiter).await.unwrap();
    for response in [&leader, &waiter] {
        assert_eq!(response.status, 200, "{}", cache_status(response));
        assert_eq!(version(response), 1);
    }
    assert_eq!(mock.hits(), 1, "one flight");
    for name in ["if-none-match", "if-modified-since", "range"] {
        assert_eq!(mock.last().header(name), None, "{name} went upstream");
    }
    assert!(cache_status(&leader).ends_with("stored"));
}
