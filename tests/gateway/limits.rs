//! Hostile clients cannot exhaust the gateway: HTTP/2 connections are bounded in time (an
//! unfinished header block, an idle connection, a silent peer) and every listener in number, and
//! bodies read whole share one memory budget. Raw sockets write the HTTP/2 frames by hand; an
//! honest client is served alongside throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::cache_sharing::page;
use crate::support::{within, Mock, Reply, TestGateway, TASK_LIST};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// An HPACK block of static-table entries: `:method GET`, `:scheme http`, `:path /`.
const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A raw HTTP/2 connection: the preface and an empty SETTINGS frame sent.
async fn h2_connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&start).await.unwrap();
    stream
}

/// Reads frames until one on `stream_id` ends its stream; true if it did before the connection
/// closed.
async fn read_to_end_of_stream(stream: &mut TcpStream, stream_id: u32) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            buf.drain(..9 + len);
            if id == stream_id && matches!(kind, 0x0 | 0x1) && flags & END_STREAM != 0 {
                return true;
            }
        }
        match within("frames", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads and discards until the gateway closes the connection: how long that took, or `None`
/// if it was still open after `patience`.
async fn time_to_close(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A metric's value from `/metrics`, 0 when absent.
async fn metric(gw: &TestGateway, name: &str) -> f64 {
    gw.metrics().await.get(name).copied().unwrap_or(0.0)
}

/// Polls a metric until `done` holds for it (bounded by `within`).
async fn metric_until(gw: &TestGateway, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    within(name, async {
        loop {
            let value = metric(gw, name).await;
            if done(value) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn honest_client_is_served(gw: &TestGateway) {
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
}

#[tokio::test]
async fn an_http2_connection_that_sends_only_its_preface_is_closed() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\n[admin]\nheader_read_timeout = \"1s\"\n",
    )
    .await;
    for addr in [gw.running().addr, gw.running().admin_addr] {
        let mut silent = h2_connect(addr).await;
        honest_client_is_served(&gw).await;
        let took = time_to_close(&mut silent, Duration::from_secs(10)).await;
        assert!(
            took.is_some_and(|t| t >= Duration::from_millis(900)),
            "{addr}: {took:?}"
        );
    }
}

#[tokio::test]
async fn an_unfinished_http2_header_block_is_closed_after_the_header_timeout() {
    let mock = Mock::ok().await;
    // Idle connections may stay a minute: only the open header block closes this one.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    )
    .await;
    let mut attacker = h2_connect(gw.running().addr).await;
    // One whole request first: the connection is then past its first-request wait.
    let whole = frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT);
    attacker.write_all(&whole).await.unwrap();
    assert!(read_to_end_of_stream(&mut attacker, 1).await);
    // Then a header block that never ends: HEADERS and CONTINUATION without END_HEADERS.
    let mut open = frame(HEADERS, END_STREAM, 3, &GET_ROOT[..2]);
    open.extend(frame(CONTINUATION, 0, 3, &GET_ROOT[2..]));
    attacker.write_all(&open).await.unwrap();
    honest_client_is_served(&gw).await;
    let took = time_to_close(&mut attacker, Duration::from_secs(20)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(900) && t < Duration::from_secs(15)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}

#[tokio::test]
async fn idle_connections_of_both_protocols_are_closed_after_the_idle_timeout() {
    let mock = Mock::ok().await;
    // The header timeout is long: only the idle timeout closes these.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"30s\"\nidle_timeout = \"1s\"\n",
    )
    .await;
    let mut h2 = h2_connect(gw.running().addr).await;
    h2.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    assert!(read_to_end_of_stream(&mut h2, 1).await);
    let took = time_to_close(&mut h2, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );

    let mut h1 = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    h1.write_all(b"GET /koodrive/ose/v1/task/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    within("an answer", h1.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let took = time_to_close(&mut h1, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}

#[tokio::test]
async fn a_silent_http2_peer_with_a_request_in_service_is_found_by_pings() {
    // KooDrive takes 20 s: the request stays in service, so only an unanswered ping can tell
    // the peer is gone.
    let mock = Mock::start(|_| Reply::ok().delay(Duration::from_secs(20))).await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"1s\"\n[upstream]\ntimeout = \"30s\"\n",
    )
    .await;
    let mut silent = h2_connect(gw.running().addr).await;
    silent
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    within("the request upstream", mock.wait_for_hits(1)).await;
    let took = time_to_close(&mut silent, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_connections = 4\n[admin]\nmax_connections = 2\n",
    )
    .await;
    // The honest client's connection is one of the four.
    honest_client_is_served(&gw).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(h2_connect(gw.running().addr).await);
    }
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"proxy\"}",
        |n| n == 4.0,
    )
    .await;
    let mut refused = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let took = time_to_close(&mut refused, Duration::from_secs(10)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(5)), "{took:?}");
    honest_client_is_served(&gw).await;
    let refusals = "koodrive_gateway_connections_refused_total{listener=\"proxy\"}";
    assert_eq!(metric(&gw, refusals).await, 1.0);

    // A place comes free when a connection goes.
    drop(idle.pop());
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"proxy\"}",
        |n| n == 3.0,
    )
    .await;
    let fresh = crate::support::Client::new(gw.running().addr);
    assert_eq!(fresh.get(TASK_LIST).await.status, 200);

    // The admin listener has its own, smaller cap (the scraping client holds one place).
    let _one = within("connect", TcpStream::connect(gw.running().admin_addr))
        .await
        .unwrap();
    metric_until(
        &gw,
        "koodrive_gateway_connections{listener=\"admin\"}",
        |n| n == 2.0,
    )
    .await;
    let mut over = within("connect", TcpStream::connect(gw.running().admin_addr))
        .await
        .unwrap();
    let took = time_to_close(&mut over, Duration::from_secs(10)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(5)), "{took:?}");
    let refusals = "koodrive_gateway_connections_refused_total{listener=\"admin\"}";
    assert_eq!(metric(&gw, refusals).await, 1.0);
}

const BUFFERED: &str = "koodrive_gateway_buffered_bytes";
const CREATE: &str = "/koodrive/ose/v1/task/create";

/// A signed POST whose head declares `len` body bytes, of which it sends one KiB and then
/// nothing more.
async fn slow_sender(gw: &TestGateway, len: usize) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let head = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1024]).await.unwrap();
    stream
}

/// The status and text of the answer on a raw connection (its head and what came with it).
async fn answer_of(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = within("an answer", stream.read(&mut buf)).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn signed_bodies_share_the_buffer_budget_and_are_refused_before_being_read() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_buffered_bytes = \"1MiB\"\n[upstream]\ntimeout = \"20s\"\n",
    )
    .await;
    const KIB_300: usize = 300 * 1024;
    // Three slow senders reserve 900 KiB of the 1 MiB.
    let mut holding = Vec::new();
    for _ in 0..3 {
        holding.push(slow_sender(&gw, KIB_300).await);
    }
    let held = metric_until(&gw, BUFFERED, |n| n >= 3.0 * KIB_300 as f64).await;
    assert_eq!(held, 3.0 * KIB_300 as f64);

    // A fourth cannot reserve its length now: 503 with Retry-After, before its body is read.
    let mut fourth = slow_sender(&gw, KIB_300).await;
    let answer = answer_of(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("GATEWAY_OVERLOADED"), "{answer}");
    // One larger than the whole budget never could: 413 (it is within max_signed_body).
    let mut huge = slow_sender(&gw, 2 * 1024 * 1024).await;
    let answer = answer_of(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("GATEWAY_BODY_TOO_LARGE"), "{answer}");
    // Many more, all refused: the budget is never exceeded.
    for _ in 0..20 {
        let mut more = slow_sender(&gw, KIB_300).await;
        assert!(answer_of(&mut more).await.starts_with("HTTP/1.1 503"));
    }
    assert!(metric(&gw, BUFFERED).await <= (1024 * 1024) as f64);
    honest_client_is_served(&gw).await;
    assert_eq!(
        mock.hits(),
        1,
        "only the honest client's request went upstream"
    );

    // Gone, they give their bytes back; a signed body is read and sent again.
    drop(holding);
    metric_until(&gw, BUFFERED, |n| n == 0.0).await;
    let body = vec![b' '; KIB_300];
    let request = gw
        .client
        .request(http::Method::POST, CREATE)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    assert_eq!(gw.client.send(request).await.status, 200);
    assert_eq!(mock.last().body.len(), KIB_300);
    assert_eq!(metric(&gw, BUFFERED).await, 0.0);
}

#[tokio::test]
async fn a_chunked_signed_body_reserves_as_it_grows() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_buffered_bytes = \"256KiB\"\n").await;
    let mut stream = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let head = format!("POST {CREATE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    // 64 KiB held, counted as it came.
    stream.write_all(chunk.as_bytes()).await.unwrap();
    metric_until(&gw, BUFFERED, |n| n >= 65536.0).await;
    honest_client_is_served(&gw).await;
    // Grown past the whole budget: 413, and the bytes are given back.
    let mut answer = String::new();
    for _ in 0..4 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    answer.push_str(&answer_of(&mut stream).await);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    metric_until(&gw, BUFFERED, |n| n == 0.0).await;
    assert_eq!(
        mock.hits(),
        1,
        "only the honest client's request went upstream"
    );
}

#[tokio::test]
async fn an_upstream_body_that_does_not_fit_the_budget_now_streams_through_unnormalized() {
    // A task read's answer is normalized (its `code` becomes a string) when it can be buffered.
    let body = format!(
        r#"{{"code":0,"msg":"{}","taskDto":{{"taskId":1}}}}"#,
        "x".repeat(8 * 1024)
    );
    let mock = Mock::start(move |_| Reply::json(200, body.clone())).await;
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_buffered_bytes = \"64KiB\"\n[upstream]\ntimeout = \"20s\"\n",
    )
    .await;
    let normalized = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(normalized.json()["code"], "0");
    // A slow sender holds 60 of the 64 KiB: the next answer cannot be buffered.
    let _holding = slow_sender(&gw, 60 * 1024).await;
    metric_until(&gw, BUFFERED, |n| n >= 60.0 * 1024.0).await;
    let passed = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(passed.status, 200);
    assert_eq!(
        passed.json()["code"],
        0,
        "passed through as KooDrive sent it"
    );
    let over = "koodrive_gateway_normalize_fallbacks_total{reason=\"over_budget\"}";
    assert_eq!(metric(&gw, over).await, 1.0);
    assert!(metric(&gw, BUFFERED).await <= 64.0 * 1024.0);
}

#[tokio::test]
async fn a_connection_past_max_connection_duration_closes_after_its_answer() {
    let mock = Mock::ok().await;
    // Timeouts far away: only the connection's age ends these.
    let gw = TestGateway::for_mock(
        &mock,
        "[server]\nmax_connection_duration = \"1s\"\nheader_read_timeout = \"30s\"\nidle_timeout = \"30s\"\n",
    )
    .await;
    // HTTP/1 kept busy: every request is answered, the one after its age with
    // `Connection: close`, and then the connection ends.
    let mut h1 = within("connect", TcpStream::connect(gw.running().addr))
        .await
        .unwrap();
    let started = Instant::now();
    let mut closing = None;
    for _ in 0..100 {
        h1.write_all(b"GET /koodrive/ose/v1/task/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = answer_of(&mut h1).await.to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        if answer.contains("connection: close") {
            closing = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closing = closing.expect("no answer said Connection: close within 100 requests");
    assert!(closing >= Duration::from_millis(900), "{closing:?}");
    let took = time_to_close(&mut h1, Duration::from_secs(10)).await;
    assert!(took.is_some(), "still open after Connection: close");

    // HTTP/2, served and then quiet: closed at its age, not its idle timeout.
    let mut h2 = h2_connect(gw.running().addr).await;
    h2.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, GET_ROOT))
        .await
        .unwrap();
    assert!(read_to_end_of_stream(&mut h2, 1).await);
    let took = time_to_close(&mut h2, Duration::from_secs(15)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}"
    );
    honest_client_is_served(&gw).await;
}

/// README, metrics: "`koodrive_gateway_in_flight` | gauge | | client requests in flight, and
/// task-list fetches that outlive theirs (a flight whose leader hung up, a background refresh):
/// the count `server.max_in_flight` sheds above"; config reference: "`server.max_in_flight` |
/// beyond it: 503 `GATEWAY_OVERLOADED`".
///
/// A task-list miss whose client is still waiting is counted twice: once as the client request,
/// once as its flight (when every flight counted itself, not only those that outlive their
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
