//! README claims the code did not keep, found in the fourth review round (each fixed since). Each
//! test states the claim it checks and failed on the code it was written against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::{Client, Mock, Reply, TestGateway, TASK_LIST};

fn page() -> Reply {
    Reply::json(
        200,
        r#"{"taskListDtos":[{"taskId":"1486254586942472064"}],"code":0,"msg":"Success."}"#,
    )
}

/// README, config reference: "`upstream.connect_timeout` | `2s` | TCP + TLS connect".
///
/// hyper-util's `HttpConnector::set_connect_timeout` bounds the TCP connect only; the rustls
/// handshake that `HttpsConnector` runs after it is bounded by nothing but `upstream.timeout`.
/// An https upstream that accepts the connection and never answers the ClientHello holds every
/// request for the whole `upstream.timeout` (5 s here), not `connect_timeout` (300 ms).
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_bounded_by_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, keeps every socket open, never writes a byte: the TLS handshake never completes.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let url = format!("https://{addr}");
    let overlay = "[upstream]\nconnect_timeout = \"300ms\"\ntimeout = \"5s\"";
    let gw = TestGateway::start(crate::support::config(&url, overlay)).await;
    let started = Instant::now();
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    let took = started.elapsed();
    holder.abort();
    assert!(
        took < Duration::from_secs(2),
        "upstream.connect_timeout is 300ms (\"TCP + TLS connect\"), yet a TLS handshake that \
         never completes held the request {took:?} (upstream.timeout is 5s): status {}, {}",
        response.status,
        response.text()
    );
}

/// README, metrics: "`koodrive_gateway_in_flight` | gauge | | client requests in flight, and
/// task-list fetches that outlive theirs (a flight whose leader hung up, a background refresh):
/// the count `server.max_in_flight` sheds above"; config reference: "`server.max_in_flight` |
/// beyond it: 503 `GATEWAY_OVERLOADED`".
///
/// A task-list miss whose client is still waiting is counted twice: once as the client request,
/// once as its flight (`pipeline::counted` wraps every flight, not only those that outlive their
/// leader). With `max_in_flight = 2`, one client waiting on a miss and a second client request
/// are two requests, not beyond the limit, yet the second is shed with a 503.
#[tokio::test]
async fn a_task_list_miss_whose_client_waits_takes_one_place_in_max_in_flight() {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let mock = Mock::start(move |seen| match seen.uri.path() == TASK_LIST {
        true => page().hold(Arc::clone(&held)),
        false => Reply::ok(),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 2").await;
    let list = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    mock.wait_for_hits(1).await;
    let in_flight = gw.metrics().await["koodrive_gateway_in_flight"];
    let second = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    // A permit if the mock is not waiting yet.
    release.notify_one();
    let first = list.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        second.status,
        200,
        "max_in_flight = 2 and only two client requests in flight (one waiting on its own \
         task-list miss), yet the second was shed: {} (in_flight gauge {in_flight} with one \
         client request open)",
        second.text()
    );
}

/// README, the task-list key: "`X-User-Id`, a SHA-256 of the effective credential (the caller's
/// token, or the configured token or app id) and the effective `language`".
///
/// Over HTTP/2 (where a field may arrive padded) one credential that KooDrive reads as the same
/// once got two cache entries. A padded value is malformed there (RFC 9113 section 8.2.1): it is
/// refused, so the key and KooDrive only ever see one spelling.
#[tokio::test]
async fn a_padded_credential_over_http2_is_refused_not_keyed_apart() {
    let mock = Mock::start(|_| page()).await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let h2 = Client::http2(gw.running().addr);
    let first = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token")])
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(mock.hits(), 1);
    let padded = h2
        .get_with(TASK_LIST, &[("authorization", "Bearer caller-token ")])
        .await;
    assert_eq!(padded.status, 400, "{}", padded.text());
    assert!(padded.text().contains("authorization"), "{}", padded.text());
    assert_eq!(mock.hits(), 1);
}

/// README, metrics: "`koodrive_gateway_cache_misses_total` | counter | | requests that fetched
/// (misses, no-cache, no-store)".
///
/// A task-list page over `normalize.max_body` is counted twice for the one request that fetched
/// it: once as the flight's leader (`miss`), then again when that same request streams the page
/// through itself (`pass`).
#[tokio::test]
async fn a_too_large_page_is_one_miss_for_the_one_request_that_fetched_it() {
    let big = format!(
        r#"{{"taskListDtos":[],"pad":"{}","code":0,"msg":"Success."}}"#,
        "x".repeat(4096)
    );
    let mock = Mock::start(move |_| Reply::json(200, big.clone())).await;
    let gw = TestGateway::for_mock(&mock, "[normalize]\nmax_body = \"1KiB\"").await;
    let response = gw.client.get(TASK_LIST).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.header("cache-status").contains("fwd=bypass"),
        "{:?}",
        response.header("cache-status")
    );
    let metrics = gw.metrics().await;
    let requests: f64 = metrics
        .iter()
        .filter(|(name, _)| name.starts_with("koodrive_gateway_requests_total{"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests, 1.0, "one client request");
    assert_eq!(
        metrics["koodrive_gateway_cache_misses_total"],
        1.0,
        "one request fetched one page (upstream calls: {})",
        mock.hits()
    );
}
