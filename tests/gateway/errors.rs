//! The errors the gateway makes: status, JSON body, marker header, trace id; never a hang.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;

use crate::support::mock::ChannelBody;
use crate::support::{
    within, Mock, Reply, TestGateway, TestResponse, PATIENCE, TASK_CREATE, TASK_LIST,
};

fn assert_gateway_error(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let json = response.json();
    assert_eq!(json["code"], code);
    assert!(json["msg"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(response.header("koodrive-gateway-error"), code);
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(response.header("x-traceid").len(), 58);
}

#[tokio::test]
async fn refused_connection_is_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = TestGateway::start(crate::support::config(&url, "")).await;
    assert_gateway_error(
        &gw.client.get(TASK_LIST).await,
        502,
        "GATEWAY_UPSTREAM_UNREACHABLE",
    );
}

#[tokio::test]
async fn reset_before_headers_is_502() {
    let mock = Mock::start(|_| Reply::drop_connection()).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    assert_gateway_error(
        &gw.client.get(TASK_LIST).await,
        502,
        "GATEWAY_UPSTREAM_PROTOCOL",
    );
}

#[tokio::test]
async fn garbage_instead_of_http_is_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n")
                .await;
        }
    });
    let gw = TestGateway::start(crate::support::config(&url, "")).await;
    assert_gateway_error(
        &gw.client.get(TASK_LIST).await,
        502,
        "GATEWAY_UPSTREAM_PROTOCOL",
    );
    server.abort();
}

#[tokio::test]
async fn upstream_slower_than_the_timeout_is_504() {
    let mock = Mock::start(|_| Reply::ok().delay(PATIENCE)).await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\ntimeout = \"300ms\"").await;
    let started = Instant::now();
    let response = gw.client.get(TASK_LIST).await;
    assert_gateway_error(&response, 504, "GATEWAY_UPSTREAM_TIMEOUT");
    assert!(
        started.elapsed() < PATIENCE / 2,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_stalled_past_the_timeout_is_cut_off() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = std::sync::Arc::clone(&gate);
    let mock = Mock::start(move |_| Reply::json(200, "0123456789").gate(held.clone())).await;
    let overlay = "[upstream]\ntimeout = \"300ms\"\n[auth]\nmode = \"token\"\naccess_token = \"t\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let request = gw
        .client
        .request(Method::GET, "/koodrive/ose/v1/files/x")
        .body(Full::default())
        .unwrap();
    let response = gw.client.send_streaming(request).await;
    assert_eq!(response.status(), 200);
    let body = within("the cut-off body", response.into_body().collect()).await;
    assert!(
        body.is_err(),
        "a stalled body must end in an error, not a hang"
    );
    // The gateway keeps serving.
    drop(gate);
}

/// POSTs a task create with a chunked body (no Content-Length) of `chunks` x `size` bytes;
/// returns the status.
async fn post_chunked(gw: &TestGateway, chunks: usize, size: usize) -> u16 {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..chunks {
            let _ = tx.send(Bytes::from(vec![b'b'; size])).await;
        }
    });
    let chunked = http::Request::post(gw.client.url("/koodrive/ose/v1/task/create"))
        .body(ChannelBody::new(rx))
        .unwrap();
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let response = within("chunked response", raw.request(chunked))
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn a_signed_body_over_the_limit_is_413_and_never_sent() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\nmax_signed_body = \"1KiB\"").await;
    let big = Bytes::from(vec![b'a'; 2048]);
    assert_gateway_error(
        &gw.client.post_with(TASK_CREATE, &[], big.clone()).await,
        413,
        "GATEWAY_BODY_TOO_LARGE",
    );
    // Without Content-Length (chunked), the bound still holds while reading.
    assert_eq!(post_chunked(&gw, 4, 512).await, 413);
    assert_eq!(mock.hits(), 0);
}

/// In token mode bodies stream to KooDrive; `server.max_body` still bounds them: a larger declared
/// length is refused before anything is sent, a chunked body is cut off at the bound. Neither is
/// KooDrive's fault, so the circuit breaker (here opening after one failure) stays closed.
#[tokio::test]
async fn a_streamed_body_over_the_limit_is_413_and_not_counted_against_koodrive() {
    let mock = Mock::ok().await;
    let overlay = r#"
        [server]
        max_body = "1KiB"
        [upstream]
        breaker_failures = 1
        [auth]
        mode = "token"
        access_token = "t"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_gateway_error(
        &gw.client
            .post_with(TASK_CREATE, &[], vec![b'a'; 2048])
            .await,
        413,
        "GATEWAY_BODY_TOO_LARGE",
    );
    assert_eq!(mock.hits(), 0, "refused before anything was sent");
    // Chunked: it streams until the bound, then the exchange is cut off.
    assert_eq!(post_chunked(&gw, 4, 512).await, 413);
    assert!(
        mock.requests().iter().all(|seen| seen.body.len() < 2048),
        "KooDrive never got the whole body"
    );
    // Within the bound, streamed bodies go through, and the breaker did not open.
    assert_eq!(
        gw.client.post_with(TASK_CREATE, &[], "{}").await.status,
        200
    );
    assert_eq!(mock.last().body, "{}");
}

/// A probe that fails on its client's side (here a streamed body over `server.max_body`) says
/// nothing of KooDrive: it does not close the breaker, and the next request probes instead.
#[tokio::test]
async fn a_probe_its_own_client_failed_does_not_close_the_breaker() {
    let mock = Mock::start(|seen| match seen.uri.path().ends_with("/fail") {
        true => Reply::json(500, r#"{"code":1,"msg":"failing"}"#),
        false => Reply::ok(),
    })
    .await;
    let overlay = r#"
        [server]
        max_body = "1KiB"
        [upstream]
        breaker_failures = 1
        breaker_cooldown = "200ms"
        [auth]
        mode = "token"
        access_token = "t"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_eq!(
        gw.client.get("/koodrive/ose/v1/task/fail").await.status,
        500
    );
    let transitions = |metrics: &std::collections::HashMap<String, f64>, reason: &str| {
        let key = format!(r#"koodrive_gateway_breaker_transitions_total{{reason="{reason}"}}"#);
        metrics.get(&key).copied().unwrap_or(0.0)
    };
    assert_eq!(transitions(&gw.metrics().await, "open"), 1.0);
    // Past the cooldown (generously), the next request is the probe.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(post_chunked(&gw, 4, 512).await, 413);
    let metrics = gw.metrics().await;
    assert_eq!(transitions(&metrics, "half_open"), 1.0, "it was the probe");
    assert_eq!(
        transitions(&metrics, "closed"),
        0.0,
        "closed by the client's fault"
    );
    let client_errors =
        r#"koodrive_gateway_upstream_requests_total{route="task_write",outcome="client_error"}"#;
    assert_eq!(
        metrics.get(client_errors),
        Some(&1.0),
        "counted as the client's"
    );
    // The next request probes: KooDrive answers it, and that closes the breaker.
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 200);
    assert_eq!(transitions(&gw.metrics().await, "closed"), 1.0);
}

#[tokio::test]
async fn over_max_in_flight_is_503_with_retry_after() {
    let mock = Mock::with_slow_path(Duration::from_millis(1500)).await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 1").await;
    let client = gw.client.clone();
    let slow = tokio::spawn(async move { client.get("/koodrive/ose/v1/task/slow").await });
    mock.wait_for_hits(1).await;
    let shed = gw.client.get(TASK_LIST).await;
    assert_gateway_error(&shed, 503, "GATEWAY_OVERLOADED");
    assert_eq!(shed.header("retry-after"), "1");
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(mock.hits(), 1);
    // Capacity comes back once the slow request is done.
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
}

/// A client that hangs up while its request waits on KooDrive takes the request out of flight:
/// the gauge goes back to 0, the one slot `max_in_flight = 1` allows is free again, and the
/// request is counted as answered with a 4xx (nginx's 499, which the access event says).
#[tokio::test]
async fn a_client_hanging_up_mid_request_leaves_nothing_in_flight() {
    let mock = Mock::with_slow_path(Duration::from_secs(600)).await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 1").await;
    let metric = |name: &'static str| async { gw.metrics().await.get(name).copied() };
    let in_flight = || metric("koodrive_gateway_in_flight");
    let hung_up = r#"koodrive_gateway_requests_total{route="task_write",method="POST",status_class="4xx",cache="none"}"#;
    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /koodrive/ose/v1/task/slow HTTP/1.1\r\nHost: gw\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    mock.wait_for_hits(1).await;
    assert_eq!(in_flight().await, Some(1.0));
    drop(stream);
    within("in-flight back to 0", async {
        while in_flight().await != Some(0.0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(metric(hung_up).await, Some(1.0));
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
    assert_eq!(mock.hits(), 2);
}

/// README, "Errors the gateway makes": `503 GATEWAY_UPSTREAM_CIRCUIT_OPEN ... (with Retry-After)`.
/// Other routes carry it; the task list (whose fetch errors are wrapped for collapsed waiters)
/// answers the same 503 without it.
#[tokio::test]
async fn a_task_list_refused_by_an_open_breaker_carries_retry_after() {
    let mock = Mock::start(|_| Reply::json(503, r#"{"code":1,"msg":"down"}"#)).await;
    let overlay = r#"
        [upstream]
        breaker_failures = 1
        breaker_cooldown = "30s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // One failure opens the breaker.
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 503);
    let read = gw.client.get("/koodrive/ose/v1/task/2").await;
    assert_eq!(
        read.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    assert!(
        read.headers.contains_key("retry-after"),
        "task read: {:?}",
        read.headers
    );

    let list = gw.client.get(&format!("{TASK_LIST}?pageSize=7")).await;
    assert_eq!(list.status, 503);
    assert_eq!(
        list.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    assert!(
        list.headers.contains_key("retry-after"),
        "the task list's circuit-open 503 has no Retry-After: {:?}",
        list.headers
    );
}
