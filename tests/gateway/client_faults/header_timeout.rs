//! The header timeout cuts off slow heads, and only heads: idle keep-alive connections close,
//! slow service, answers and bodies do not.

use super::*;

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
