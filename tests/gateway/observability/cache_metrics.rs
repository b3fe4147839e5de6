//! The cache's metrics: misses whose client hung up, gauges of what it holds, invalidations by
//! writes whose client hung up.

use super::*;

/// `cache_misses_total` is "requests that fetched", yet a task-list miss whose client
/// hangs up while its (shared) fetch runs is never counted: `serve_miss` calls
/// `record(state, "miss")` only after `flight.wait` returns. The fetch still goes to KooDrive
/// (and stores the page): KooDrive was called once, and no cache counter moved. (A `no-cache`
/// request is counted before it fetches, so the same hang-up is counted there; a collapsed
/// waiter that hangs up is likewise never counted as collapsed.)
#[tokio::test]
async fn a_miss_whose_client_hangs_up_is_still_a_miss() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |_| {
        Reply::json(200, r#"{"taskListDtos":[],"code":0}"#).hold(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;

    let path = format!("{TASK_LIST}?status=1");
    let stream = raw_get(&gw, &path).await;
    mock.wait_for_hits(1).await;
    drop(stream);
    metrics_until(&gw, "the leader's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["route=\"task_list\"", "status_class=\"4xx\""],
        ) == 1.0
    })
    .await;
    // KooDrive answers the orphaned flight, which stores the page.
    hold.notify_one();
    // The orphaned flight ends (its place in `in_flight` given back) once KooDrive answered.
    let metrics = metrics_until(&gw, "the flight's end", |m| {
        sum(m, "koodrive_gateway_in_flight", &[]) == 0.0
            && sum(m, "koodrive_gateway_upstream_requests_total", &[]) == 1.0
    })
    .await;
    let upstream = sum(&metrics, "koodrive_gateway_upstream_requests_total", &[]);
    let misses = sum(&metrics, "koodrive_gateway_cache_misses_total", &[]);
    let collapsed = sum(&metrics, "koodrive_gateway_cache_collapsed_total", &[]);
    assert_eq!(
        (misses + collapsed, upstream),
        (1.0, 1.0),
        "(misses + collapsed, upstream calls): the request that started the fetch is counted \
         nowhere in the cache metrics:\n{}",
        dump(&metrics, "koodrive_gateway_cache")
    );
}

/// `cache_entries` and `cache_bytes` are read from moka's `entry_count()` and
/// `weighted_size()`, which only move when moka runs its pending maintenance: after a page is
/// stored and served as a hit, `/metrics` still says the cache holds nothing, and after a
/// `purge_all` it keeps saying what was there before (until later traffic runs the maintenance).
#[tokio::test]
async fn cache_gauges_say_what_the_cache_holds() {
    let mock = Mock::start(|_| Reply::json(200, r#"{"taskListDtos":[],"code":0}"#)).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let path = format!("{TASK_LIST}?status=1");
    let stored = gw.client.get(&path).await;
    assert!(
        stored.header("cache-status").contains("stored"),
        "{:?}",
        stored.headers
    );
    let hit = gw.client.get(&path).await;
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.headers
    );
    let mut wrong = Vec::new();
    let held = gw.metrics().await;
    let (entries, bytes) = (
        sum(&held, "koodrive_gateway_cache_entries", &[]),
        sum(&held, "koodrive_gateway_cache_bytes", &[]),
    );
    if entries != 1.0 || bytes <= 0.0 {
        wrong.push(format!(
            "one page stored and served as a hit: cache_entries = {entries}, cache_bytes = {bytes}"
        ));
    }
    // Hits until moka's maintenance has caught up and the gauge says 1.
    within("cache_entries to catch up", async {
        loop {
            gw.client.get(&path).await;
            if sum(&gw.metrics().await, "koodrive_gateway_cache_entries", &[]) == 1.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        gw.admin
            .post_with("/cache/purge", &[], Bytes::new())
            .await
            .status,
        200
    );
    let after = gw.metrics().await;
    let (entries, bytes) = (
        sum(&after, "koodrive_gateway_cache_entries", &[]),
        sum(&after, "koodrive_gateway_cache_bytes", &[]),
    );
    if entries != 0.0 || bytes != 0.0 {
        wrong.push(format!(
            "after POST /cache/purge (everything dropped): cache_entries = {entries}, cache_bytes = {bytes}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A task write whose client hangs up after the write reached KooDrive is not treated as possibly
/// applied: hyper drops the request's future while it awaits KooDrive's answer,
/// before the invalidation, so the writer's cached lists are served
/// on as hits (for the TTL, then stale-while-revalidate) and `cache_invalidations_total` never
/// moves. The README counts a write "whose answer timed out or broke off after it was sent" as
/// possibly applied; a client hang-up is the same ambiguity.
#[tokio::test]
async fn a_write_whose_client_hangs_up_still_invalidates() {
    let hold = Arc::new(Notify::new());
    let held = Arc::clone(&hold);
    let mock = Mock::start(move |seen| match seen.method {
        Method::POST => {
            Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#).hold(Arc::clone(&held))
        }
        _ => Reply::json(200, r#"{"taskListDtos":[],"code":0}"#),
    })
    .await;
    let overlay = format!("{TOKEN_MODE}[cache]\nttl = \"60s\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    let path = format!("{TASK_LIST}?status=1");
    let stored = gw.client.get(&path).await;
    assert!(
        stored.header("cache-status").contains("stored"),
        "{:?}",
        stored.headers
    );

    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    mock.wait_for_hits(2).await;
    drop(stream);
    metrics_until(&gw, "the write's 499", |m| {
        sum(
            m,
            "koodrive_gateway_requests_total",
            &["route=\"task_write\"", "status_class=\"4xx\""],
        ) == 1.0
    })
    .await;
    hold.notify_one();

    let after = gw.client.get(&path).await;
    let metrics = gw.metrics().await;
    assert!(
        !after.header("cache-status").contains("; hit"),
        "the writer's list after a write KooDrive received: Cache-Status {:?}, \
         invalidations {}",
        after.header("cache-status"),
        dump(&metrics, "koodrive_gateway_cache_invalidations")
    );
}
