//! The fault matrix: every upstream fault crossed with a plain miss, a stale page available, and
//! 50 collapsed waiters. Each cell checks the answer, that it came within upstream.timeout plus a
//! margin, that nothing is left in flight, and that the gateway serves normally afterwards.
//! Then retries and the circuit breaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use crate::support::client::Client;
use crate::support::faults::{Fault, FaultServer, HEALTHY_PAGE};
use crate::support::mock::ChannelBody;
use crate::support::{config, within, Mock, Reply, TestGateway, TestResponse, TASK_LIST};

const TIMEOUT: Duration = Duration::from_secs(1);
/// Generous on a loaded 2-core machine: the point is "bounded", not "fast".
const MARGIN: Duration = Duration::from_secs(4);

const MATRIX_CONFIG: &str = r#"
    [upstream]
    timeout = "1s"
    breaker_failures = 0
    [cache]
    ttl = "100ms"
    stale_while_revalidate = "0s"
    stale_if_error = "60s"
"#;

/// What a plain miss must answer: a status and, for gateway-made errors, the code.
fn expected(fault: Fault) -> (u16, &'static str) {
    match fault {
        Fault::Refused => (502, "GATEWAY_UPSTREAM_UNREACHABLE"),
        Fault::ResetBeforeHeaders | Fault::ResetMidHead | Fault::ResetMidBody | Fault::Garbage => {
            (502, "GATEWAY_UPSTREAM_PROTOCOL")
        }
        Fault::StallBeforeHeaders | Fault::StallMidBody => (504, "GATEWAY_UPSTREAM_TIMEOUT"),
        Fault::GzipBomb => (502, "GATEWAY_UPSTREAM_BODY_TOO_LARGE"),
        Fault::Huge => unreachable!("checked by check_huge"),
        Fault::Status(status) => (status, "13000"),
        Fault::ApigThrottle => (400, "APIG.0308"),
        Fault::Healthy | Fault::ResetOnce => (200, "0"),
    }
}

fn check(fault: Fault, response: &TestResponse, elapsed: Duration) {
    let (status, code) = expected(fault);
    assert_eq!(response.status, status, "{fault:?}: {}", response.text());
    let json = response.json();
    assert!(
        json["code"].as_str().unwrap().starts_with(code),
        "{fault:?}: {json}"
    );
    let gateway_made = code.starts_with("GATEWAY_");
    assert_eq!(
        response.headers.contains_key("koodrive-gateway-error"),
        gateway_made,
        "{fault:?}"
    );
    assert!(elapsed < TIMEOUT + MARGIN, "{fault:?} took {elapsed:?}");
}

fn check_stale(fault: Fault, response: &TestResponse, elapsed: Duration) {
    assert_eq!(response.status, 200, "{fault:?}: {}", response.text());
    assert_eq!(
        response.json()["taskList"][0]["taskName"],
        "healthy",
        "{fault:?}"
    );
    let status = response.header("cache-status");
    assert!(
        status.contains("detail=stale-if-error"),
        "{fault:?}: {status}"
    );
    assert!(elapsed < TIMEOUT + MARGIN, "{fault:?} took {elapsed:?}");
}

async fn in_flight(gw: &TestGateway) -> f64 {
    gw.metrics().await["koodrive_gateway_in_flight"]
}

async fn timed(gw: &TestGateway, path: &str) -> (TestResponse, Duration) {
    let started = Instant::now();
    let response = gw.client.get(path).await;
    (response, started.elapsed())
}

/// The size of [`Fault::Huge`]'s body.
const HUGE: u64 = 50 * 1024 * 1024;

/// A page over `normalize.max_body` is not an error: it streams through as KooDrive sent it,
/// fetched by each request on its own (too large to share or store). Checks the head, within the
/// bound; then reads the whole body (`whole`) or one chunk and leaves, as a client may.
async fn check_huge(client: &Client, path: &str, started: Instant, whole: bool) {
    let request = client.request(Method::GET, path).body(Full::default());
    let response = client.send_streaming(request.unwrap()).await;
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-length"], HUGE.to_string().as_str());
    assert!(!headers.contains_key("koodrive-gateway-error"));
    let status = headers["cache-status"].to_str().unwrap();
    assert!(status.contains("detail=too-large"), "{status}");
    let mut body = response.into_body();
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap_or_default();
        assert!(data.iter().all(|&b| b == b' '), "byte for byte");
        read += data.len() as u64;
        if !whole {
            return;
        }
    }
    assert_eq!(read, HUGE);
}

/// Runs the three cells for one fault, then checks the gateway is healthy again.
async fn matrix(fault: Fault) {
    let server = FaultServer::start(Fault::Healthy).await;
    let gw = TestGateway::for_mock_url(&server.url(), MATRIX_CONFIG).await;

    // A stale page for ?status=2 first (stored healthy, then past its TTL).
    assert_eq!(
        gw.client.get(&format!("{TASK_LIST}?status=2")).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.set(fault).await;

    if fault == Fault::Huge {
        // Not a failure, so no stale page either: the body streams through in every cell, and
        // each of the 50 requests fetches it for itself (only the flight that learnt it is extra).
        let client = &gw.client;
        check_huge(
            client,
            &format!("{TASK_LIST}?status=1"),
            Instant::now(),
            true,
        )
        .await;
        check_huge(
            client,
            &format!("{TASK_LIST}?status=2"),
            Instant::now(),
            true,
        )
        .await;
        let before = server.hits();
        let started = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let client = gw.client.clone();
                let path = format!("{TASK_LIST}?status=3");
                tokio::spawn(async move { check_huge(&client, &path, started, false).await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert!(server.hits() - before <= 51, "{}", server.hits() - before);
        // The clients left mid-body: each exchange ends when the gateway notices.
        crate::support::within("in-flight back to 0", async {
            while in_flight(&gw).await != 0.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    } else {
        // A plain miss.
        let (response, elapsed) = timed(&gw, &format!("{TASK_LIST}?status=1")).await;
        check(fault, &response, elapsed);

        // A stale page available.
        let (response, elapsed) = timed(&gw, &format!("{TASK_LIST}?status=2")).await;
        check_stale(fault, &response, elapsed);

        // 50 collapsed waiters.
        let before = server.hits();
        let started = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let client = gw.client.clone();
                tokio::spawn(async move { client.get(&format!("{TASK_LIST}?status=3")).await })
            })
            .collect();
        for waiter in waiters {
            check(fault, &waiter.await.unwrap(), started.elapsed());
        }
        assert!(
            server.hits() - before <= 4,
            "{fault:?}: {} upstream calls for 50 waiters",
            server.hits() - before
        );
    }

    assert_eq!(in_flight(&gw).await, 0.0, "{fault:?}");
    server.set(Fault::Healthy).await;
    let after = gw.client.get(&format!("{TASK_LIST}?taskType=7")).await;
    assert_eq!(
        after.status, 200,
        "{fault:?}: not serving normally afterwards"
    );
}

#[tokio::test]
async fn fault_reset_before_headers() {
    matrix(Fault::ResetBeforeHeaders).await;
}

#[tokio::test]
async fn fault_reset_mid_head() {
    matrix(Fault::ResetMidHead).await;
}

#[tokio::test]
async fn fault_reset_mid_body() {
    matrix(Fault::ResetMidBody).await;
}

#[tokio::test]
async fn fault_stall_before_headers() {
    matrix(Fault::StallBeforeHeaders).await;
}

#[tokio::test]
async fn fault_stall_mid_body() {
    matrix(Fault::StallMidBody).await;
}

#[tokio::test]
async fn fault_5xx_and_429_answers() {
    for status in [500, 502, 503, 429] {
        matrix(Fault::Status(status)).await;
    }
}

#[tokio::test]
async fn fault_api_gateway_throttling() {
    matrix(Fault::ApigThrottle).await;
}

#[tokio::test]
async fn fault_garbage_instead_of_http() {
    matrix(Fault::Garbage).await;
}

#[tokio::test]
async fn fault_50_mib_body() {
    matrix(Fault::Huge).await;
}

#[tokio::test]
async fn fault_gzip_bomb() {
    matrix(Fault::GzipBomb).await;
}

#[tokio::test]
async fn fault_connection_refused() {
    matrix(Fault::Refused).await;
}

#[tokio::test]
async fn an_idempotent_request_reset_before_headers_is_retried_once_on_a_fresh_connection() {
    let server = FaultServer::start(Fault::ResetOnce).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(server.hits(), 2, "one reset, one retry");
}

/// Retried only before any response byte: once part of the head has come, KooDrive has started
/// answering, and a second call could do twice what the first did.
#[tokio::test]
async fn a_get_reset_after_part_of_the_head_is_not_retried() {
    let server = FaultServer::start(Fault::ResetMidHead).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    let response = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_PROTOCOL");
    assert_eq!(server.hits(), 1, "retried after part of the head");
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let server = FaultServer::start(Fault::ResetBeforeHeaders).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    let post = gw
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    assert_eq!(gw.client.send(post).await.status, 502);
    assert_eq!(server.hits(), 1);
    // A GET with the same fault: retried once, then the error.
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 502);
    assert_eq!(server.hits(), 3);
}

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

/// A client that stops sending its body is at fault, not KooDrive: once upstream.timeout passes it
/// gets a 408 of the gateway's, and the breaker (here opening after one failure) stays closed.
#[tokio::test]
async fn a_client_stalling_its_upload_gets_408_and_does_not_open_the_breaker() {
    let mock = Mock::with_slow_path(Duration::from_secs(3)).await;
    let overlay = r#"
        [upstream]
        timeout = "1s"
        breaker_failures = 1
        breaker_cooldown = "60s"
        [auth]
        mode = "token"
        access_token = "t"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // One chunk, then nothing: the sender is kept, so the body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Bytes::from_static(b"{\"")).await.unwrap();
    let upload = gw
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .body(ChannelBody::new(rx))
        .unwrap();
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let started = Instant::now();
    let response = within("the stalled upload's answer", raw.request(upload))
        .await
        .unwrap();
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    let status = response.status();
    let marker = response.headers()["koodrive-gateway-error"].clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert_eq!(marker, "GATEWAY_CLIENT_BODY_TIMEOUT");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "GATEWAY_CLIENT_BODY_TIMEOUT");
    drop(tx);

    // Another client right after: KooDrive is called, not refused by an open breaker.
    let other = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(gw.metrics().await["koodrive_gateway_breaker_open"], 0.0);

    // A whole body sent and KooDrive slow to answer: KooDrive's timeout, as ever.
    let whole = gw
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/slow")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let slow = gw.client.send(whole).await;
    assert_eq!(slow.json()["code"], "GATEWAY_UPSTREAM_TIMEOUT");
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

#[test]
fn the_healthy_page_is_storable_json() {
    let json: serde_json::Value = serde_json::from_str(HEALTHY_PAGE).unwrap();
    assert_eq!(json["code"], 0);
    let _ = config("http://127.0.0.1:1", "");
}

/// A body read whole to be signed is bounded in time too: a client that promises a body and
/// stops sending it gets the 408 within upstream.timeout, and its place in flight (here the only
/// one) is free for the next request. KooDrive never hears of it.
#[tokio::test]
async fn a_client_stalling_a_body_to_be_signed_gets_408_and_frees_its_place() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mock = Mock::ok().await;
    let overlay = "[server]\nmax_in_flight = 1\n[upstream]\ntimeout = \"1s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let mut stalled = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    let head =
        "POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    within(
        "the stalled body's answer",
        stalled.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("GATEWAY_CLIENT_BODY_TIMEOUT"), "{answer}");
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    let other = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(mock.hits(), 1, "only the second request reached KooDrive");
}
