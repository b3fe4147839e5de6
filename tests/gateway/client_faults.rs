//! Misbehaving clients: slow or oversized heads, bad targets, ambiguous framing, and a crowd of
//! idle connections. Raw TCP, since a well-behaved client cannot send these.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{within, Mock, TestGateway};

/// Sends raw bytes and reads until the gateway closes the connection.
async fn exchange(gw: &TestGateway, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw.running().addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = within("the answer", stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"500ms\"").await;
    let stream = TcpStream::connect(gw.running().addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        let head = format!(
            "GET /koodrive/ose/v1/task/list HTTP/1.1\r\nX-Slow: {}",
            "a".repeat(100)
        );
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = Vec::new();
    let _ = within("the disconnect", read.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    // Each byte arrives well within the timeout; only the whole head is bounded.
    assert!(
        elapsed < Duration::from_secs(5),
        "the drip kept the connection for {elapsed:?}"
    );
    drip.abort();
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn headers_over_the_limit_are_431() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_header_bytes = \"8KiB\"").await;
    let raw = format!(
        "GET /koodrive/ose/v1/task/list HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = exchange(&gw, raw.as_bytes()).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn malformed_targets_are_400() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let targets: [&[u8]; 4] = [
        b"/koodrive/ose/v1/task/list?status=%zz",
        b"/koodrive/ose/v1/task/list?taskType=%ff%fe",
        b"/koodrive/ose/v1/task/list?taskType=\xff",
        b"/koodrive/ose/v1/task/list?pageSize=1%",
    ];
    for target in targets {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = exchange(&gw, &raw).await;
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 400"),
            "{}: {answer}",
            String::from_utf8_lossy(target)
        );
    }
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused_and_never_forwarded() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    let raw = b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\n{}";
    let answer = exchange(&gw, raw).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(mock.hits(), 0);
}

/// hyper's parser resolves these as RFC 9112 section 6.3 says (Transfer-Encoding wins and the
/// Content-Length is dropped; identical lengths are one), before the gateway sees the request,
/// so what reaches KooDrive is never ambiguous: one framing, re-encoded by the gateway.
#[tokio::test]
async fn ambiguous_framing_never_reaches_the_upstream_ambiguous() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    let requests: [&[u8]; 2] = [
        b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ];
    for raw in requests {
        let answer = exchange(&gw, raw).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer}");
        let seen = mock.last();
        assert_eq!(seen.body, "{}");
        let lengths = seen.headers.get_all("content-length").iter().count();
        let chunked = seen.headers.contains_key("transfer-encoding");
        assert!(lengths + usize::from(chunked) == 1, "{:?}", seen.headers);
    }
}
