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
use crate::support::{
    config, within, Mock, Reply, TestGateway, TestResponse, TASK_CREATE, TASK_LIST,
};

mod breaker;
mod client_stalls;
mod matrix;
mod pool;
mod retries;

const TIMEOUT: Duration = Duration::from_secs(1);
/// Generous on a loaded 2-core machine: the point is "bounded", not "fast".
const MARGIN: Duration = Duration::from_secs(4);

/// The cooldown is off: the matrix pins each fault's own answer, KooDrive's throttling included
/// (the cooldown that follows a throttle is `tests/gateway/quota.rs`'s).
const MATRIX_CONFIG: &str = r#"
    [upstream]
    timeout = "1s"
    breaker_failures = 0
    throttle_cooldown = "0s"
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

#[test]
fn the_healthy_page_is_storable_json() {
    let json: serde_json::Value = serde_json::from_str(HEALTHY_PAGE).unwrap();
    assert_eq!(json["code"], 0);
    let _ = config("http://127.0.0.1:1", "");
}
