//! Misbehaving clients: slow or oversized heads, bad targets, ambiguous framing, and a crowd of
//! idle connections. Raw TCP, since a well-behaved client cannot send these.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::Notify;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{exchange, status_line, within, Mock, Reply, TestGateway, TASK_LIST};

mod ambiguous_framing;
mod header_timeout;

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

const CREATE: &str = "POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\n";

/// Each answer on a connection, in order: its status line and body.
fn answers(text: &str) -> Vec<(String, String)> {
    text.split("HTTP/1.1 ")
        .skip(1)
        .map(|answer| {
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
            (
                head.lines().next().unwrap_or("").to_owned(),
                body.to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn connect_and_trace_are_refused_and_never_forwarded() {
    // Like a TRACE-capable server, the mock echoes a TRACE's headers back, the token with them.
    let mock = Mock::start(|request| match request.method == http::Method::TRACE {
        true => Reply::json(200, format!("{:?}", request.headers)),
        false => Reply::ok(),
    })
    .await;
    let gw = TestGateway::for_mock(
        &mock,
        "[auth]\nmode = \"token\"\naccess_token = \"tok-9f3c\"",
    )
    .await;
    // A tunnel has no use here, and KooDrive's echo of a TRACE would carry the token the gateway
    // injects. The connection serves on after the refusal.
    for first in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "TRACE /koodrive/ose/v1/task/list HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let before = mock.hits();
        let raw = format!("{first}{CREATE}Content-Length: 2\r\n\r\n{{}}");
        let text = exchange(&gw, raw.as_bytes()).await;
        let answers = answers(&text);
        assert_eq!(answers.len(), 2, "{first:?}: {answers:?}");
        let (status, body) = &answers[0];
        assert!(status.starts_with("405"), "{first:?}: {status}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "GATEWAY_METHOD_NOT_ALLOWED");
        let allow = text
            .lines()
            .find_map(|line| line.strip_prefix("allow: "))
            .unwrap_or_default();
        assert!(allow.contains("GET") && !allow.contains("TRACE"), "{text}");
        assert!(!text.contains("tok-9f3c"), "{text}");
        assert!(answers[1].0.starts_with("200"), "{answers:?}");
        assert_eq!(mock.hits() - before, 1, "{first:?}");
        assert_eq!(mock.requests().last().unwrap().method, http::Method::POST);
    }
}
