//! Misbehaving clients: slow or oversized heads, bad targets, ambiguous framing, and a crowd of
//! idle connections. Raw TCP, since a well-behaved client cannot send these.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::sync::Notify;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{exchange, status_line, within, Mock, Reply, TestGateway, TASK_LIST};

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
async fn a_head_that_only_starts_like_http2s_preface_is_cut_off_at_the_header_timeout() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"500ms\"").await;
    // An HTTP/1 head whose method is `PRI`, dripped; and all of the preface but its last two
    // bytes, then nothing. Only the whole 24-byte preface makes a connection HTTP/2.
    let starts: [(&[u8], &[u8]); 2] = [
        (b"PRI /x HTTP/1.1\r\nHost: x\r\n", b"X-Slow: a\r\n"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n", b""),
    ];
    for (start, then) in starts {
        let stream = TcpStream::connect(gw.running().addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let started = Instant::now();
        let drip = tokio::spawn(async move {
            if write.write_all(start).await.is_err() {
                return;
            }
            loop {
                for byte in then {
                    if write.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = Vec::new();
        // Ten header timeouts: the cut-off is due after one and a quarter.
        let closed = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut buf)).await;
        drip.abort();
        assert!(
            closed.is_ok(),
            "{:?} kept the connection for {:?}",
            String::from_utf8_lossy(start),
            started.elapsed()
        );
    }
    assert_eq!(mock.hits(), 0);
}

/// One client connection (hyper's client), and a handle that ends when the gateway closes it.
async fn one_connection(
    gw: &TestGateway,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(gw.running().addr).await.unwrap();
    let (send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let closed = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, closed)
}

fn task_list_request() -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("{TASK_LIST}?pageSize=10"))
        .header("host", "gateway")
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_keep_alive_connection_idle_for_the_header_timeout_is_closed() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let (mut send, closed) = one_connection(&gw).await;
    // Well within the timeout, twice: the connection serves both.
    for _ in 0..2 {
        let response = within("an answer", send.send_request(task_list_request()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Then nothing: the gateway closes it, timed from the last answer.
    let idle = Instant::now();
    within("the gateway closing the idle connection", closed)
        .await
        .unwrap();
    assert!(
        idle.elapsed() >= Duration::from_millis(250),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test]
async fn requests_spread_over_many_header_timeouts_on_one_connection_are_all_served() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"1s\"").await;
    let (mut send, closed) = one_connection(&gw).await;
    // Each head comes a quarter of the timeout after the last answer; the whole run spans three
    // timeouts, so every head is timed from its own start, not the connection's first.
    for _ in 0..12 {
        let response = within("an answer", send.send_request(task_list_request()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!closed.is_finished(), "the connection was closed");
}

#[tokio::test]
async fn a_request_in_service_longer_than_the_header_timeout_is_answered() {
    let mock = Mock::start(|_| Reply::ok().delay(Duration::from_millis(1500))).await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let (mut send, closed) = one_connection(&gw).await;
    let response = within("the slow answer", send.send_request(task_list_request()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!closed.is_finished(), "the connection was closed");
}

#[tokio::test]
async fn an_answer_streaming_longer_than_the_header_timeout_is_not_cut_off() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let mock =
        Mock::start(move |_| Reply::json(200, "first-half|second-half").gate(Arc::clone(&held)))
            .await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let (mut send, _closed) = one_connection(&gw).await;
    let request = http::Request::get("/koodrive/ose/v1/files/big")
        .header("host", "gateway")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = within("the answer", send.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = within("first half", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first-half|");
    // The answer stalls for three header timeouts before the rest comes.
    tokio::time::sleep(Duration::from_millis(900)).await;
    gate.notify_one();
    let rest = within("the rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "second-half");
}

#[tokio::test]
async fn a_request_body_sent_slowly_is_not_cut_off_by_the_header_timeout() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(gw.running().addr).await.unwrap();
    let body = br#"{"taskName":"slow"}"#;
    let head = format!(
        "POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The body over about two seconds: the head was complete, so no header timeout applies.
    for chunk in body.chunks(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(chunk).await.unwrap();
    }
    let mut answer = vec![0; 4096];
    let n = within("the answer", stream.read(&mut answer))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(status_line(&text).starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.requests()[0].body, &body[..]);
}

#[tokio::test]
async fn an_http2_connection_idle_past_the_header_timeout_stays_open() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let stream = TcpStream::connect(gw.running().addr).await.unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let closed = tokio::spawn(connection);
    let url = format!("http://{}{TASK_LIST}?pageSize=10", gw.running().addr);
    for _ in 0..2 {
        let request = http::Request::get(&url)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = within("an answer", send.send_request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // HTTP/2 has no header-read timeout (as with hyper's): idle for three of them.
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert!(!closed.is_finished(), "the connection was closed");
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

/// Content-Length with Transfer-Encoding (in either order, whatever the coding) and a repeated
/// Content-Length are refused with a 400 and the connection closed, even after good requests on
/// the same connection; hyper alone would resolve them and forward one of the framings.
/// `first`, then a create with both `Content-Length` and `Transfer-Encoding`, on one connection:
/// the two answers.
async fn then_an_ambiguous_request(gw: &TestGateway, first: &str) -> Vec<(String, String)> {
    let raw = format!(
        "{first}{CREATE}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let answers = answers(&exchange(gw, raw.as_bytes()).await);
    assert_eq!(answers.len(), 2, "{answers:?}");
    answers
}

fn assert_refused_as_ambiguous((status, body): &(String, String)) {
    assert!(status.starts_with("400"), "{status} {body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["code"], "GATEWAY_BAD_REQUEST");
}

#[tokio::test]
async fn ambiguous_framing_after_a_request_asking_for_an_upgrade_is_still_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // The gateway never upgrades (`Upgrade` is hop-by-hop), so the connection stays HTTP/1 and
    // the guard keeps reading along.
    let first = format!(
        "{CREATE}Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let answers = then_an_ambiguous_request(&gw, &first).await;
    assert!(answers[0].0.starts_with("200"), "{answers:?}");
    assert_refused_as_ambiguous(&answers[1]);
    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.requests()[0].header("upgrade"), None);
}

#[tokio::test]
async fn ambiguous_framing_after_a_connect_is_still_refused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // Refused with a 405, a CONNECT leaves the connection HTTP/1: the guard keeps reading along.
    let first = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let answers = then_an_ambiguous_request(&gw, first).await;
    assert!(answers[0].0.starts_with("405"), "{answers:?}");
    assert_refused_as_ambiguous(&answers[1]);
    assert_eq!(mock.hits(), 0);
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

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    let ambiguous = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ];
    // Good requests first, pipelined on the same connection: a chunked body and a sized one.
    let good = [
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\n\r\n{}",
    ];
    for (i, framing) in ambiguous.iter().enumerate() {
        let mut raw = String::new();
        for request in good.iter().chain([framing, &good[1]]) {
            raw.push_str(CREATE);
            raw.push_str(request);
        }
        let before = mock.hits();
        let answers = answers(&exchange(&gw, raw.as_bytes()).await);
        assert_eq!(answers.len(), 3, "{framing:?}: {answers:?}");
        assert!(answers[0].0.starts_with("200") && answers[1].0.starts_with("200"));
        let (status, body) = &answers[2];
        assert!(status.starts_with("400"), "{framing:?}: {status}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "GATEWAY_BAD_REQUEST", "{i}");
        // Only the two good requests reached KooDrive; the one after the refusal was never read.
        assert_eq!(mock.hits() - before, 2, "{framing:?}");
    }
}

#[tokio::test]
async fn a_bare_lf_after_the_last_chunk_cannot_hide_an_ambiguous_request() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"t\"").await;
    // After the last chunk hyper takes any byte but CR, a bare LF too, as the start of a trailer
    // line, and a bare LF inside one as part of it: the trailers then run on to the next CRLF
    // CRLF, swallowing the head after them, and what that head frames as its body is the next
    // request hyper reads.
    let ends = ["0\r\n\n\r\n", "0\r\nX-Trailer: 1\n\r\n"];
    let ambiguous = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    ];
    for end in ends {
        for framing in ambiguous {
            let hidden = format!("{CREATE}{framing}");
            let raw = format!(
                "{CREATE}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n{end}\
                 {CREATE}Content-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            );
            let before = mock.hits();
            let answers = answers(&exchange(&gw, raw.as_bytes()).await);
            // The chunked request reached KooDrive, the one hidden behind it did not.
            assert_eq!(mock.hits() - before, 1, "{end:?} {framing:?}: {answers:?}");
            assert_eq!(answers.len(), 2, "{end:?} {framing:?}: {answers:?}");
            assert!(answers[0].0.starts_with("200"), "{answers:?}");
            assert_refused_as_ambiguous(&answers[1]);
        }
    }
}
