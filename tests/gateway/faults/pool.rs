//! The upstream connection pool, against a raw keep-alive KooDrive that reports what crossed
//! each connection: connections are reused after answers of every framing, requests go out in
//! origin form, and an idle connection is closed after `upstream.pool_idle_timeout`.

use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::faults::read_head_into;

use super::*;

/// What the raw upstream saw.
#[derive(Debug)]
enum Seen {
    /// A new connection.
    Accepted,
    /// A request's line (`GET /path HTTP/1.1`) and its `host` header.
    Request { line: String, host: String },
    /// A connection ended (the gateway closed it, or the upstream did).
    Closed(Instant),
}

/// A raw KooDrive that answers each request on a connection by its path: `.../empty` with a 204,
/// `.../chunked` with a chunked body, anything else with a Content-Length body. It keeps each
/// connection open, or (`close_after_answer`) closes it after its first answer, saying nothing
/// of it in the answer (as a server whose keep-alive timeout ran out would).
async fn keep_alive_upstream(close_after_answer: bool) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = tx.send(Seen::Accepted);
            tokio::spawn(serve(stream, tx.clone(), close_after_answer));
        }
    });
    (url, rx)
}

async fn serve(mut stream: TcpStream, tx: mpsc::UnboundedSender<Seen>, close_after_answer: bool) {
    let mut buffered = Vec::new();
    loop {
        let Some(end) = read_head_into(&mut stream, &mut buffered).await else {
            let _ = tx.send(Seen::Closed(Instant::now()));
            return;
        };
        let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
        buffered.drain(..end);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let host = lines
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or_default()
            .to_owned();
        let answer = if line.contains("/empty") {
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        } else if line.contains("/chunked") {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
                 {:x}\r\n{HEALTHY_PAGE}\r\n0\r\n\r\n",
                HEALTHY_PAGE.len()
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{HEALTHY_PAGE}",
                HEALTHY_PAGE.len()
            )
        };
        let _ = tx.send(Seen::Request { line, host });
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if close_after_answer {
            drop(stream);
            let _ = tx.send(Seen::Closed(Instant::now()));
            return;
        }
    }
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    within("the upstream's next event", seen.recv())
        .await
        .expect("the upstream is running")
}

/// One connection carries answers of every framing (a length, none, chunked), each read to its
/// end before the next request: without a connection going back to the pool at its body's end,
/// each would open a new one.
#[tokio::test]
async fn one_upstream_connection_carries_answers_of_every_framing_in_turn() {
    let (url, mut seen) = keep_alive_upstream(false).await;
    let gw = TestGateway::for_mock_url(&url, "").await;
    let paths = [
        "/koodrive/ose/v1/file/info?fileId=1",
        "/koodrive/ose/v1/file/empty",
        "/koodrive/ose/v1/file/chunked",
        "/koodrive/ose/v1/file/info?fileId=2",
        "/koodrive/ose/v1/file/chunked",
    ];
    for path in paths {
        let response = gw.client.get(path).await;
        let expected = if path.contains("/empty") { 204 } else { 200 };
        assert_eq!(response.status, expected, "{path}: {}", response.text());
        if expected == 200 {
            assert_eq!(response.text(), HEALTHY_PAGE, "{path}");
        }
    }
    assert!(matches!(next(&mut seen).await, Seen::Accepted));
    let authority = url.trim_start_matches("http://");
    for path in paths {
        match next(&mut seen).await {
            Seen::Request { line, host } => {
                // Origin form, as HTTP/1.1 sends a request to the server itself.
                assert_eq!(line, format!("GET {path} HTTP/1.1"));
                assert_eq!(host, authority);
            }
            other => panic!("{path}: a second connection or a close: {other:?}"),
        }
    }
    assert!(seen.try_recv().is_err(), "nothing more crossed the wire");
}

/// An idle upstream connection is closed once idle for `upstream.pool_idle_timeout`, not before,
/// and the next request opens a new one.
#[tokio::test]
async fn an_idle_upstream_connection_is_closed_after_the_pool_idle_timeout() {
    let (url, mut seen) = keep_alive_upstream(false).await;
    let gw = TestGateway::for_mock_url(&url, "[upstream]\npool_idle_timeout = \"1s\"\n").await;
    let path = "/koodrive/ose/v1/file/info?fileId=1";
    assert_eq!(gw.client.get(path).await.status, 200);
    let answered = Instant::now();
    assert!(matches!(next(&mut seen).await, Seen::Accepted));
    assert!(matches!(next(&mut seen).await, Seen::Request { .. }));
    // Closed by the gateway, within the test's patience: never before the idle timeout.
    match next(&mut seen).await {
        Seen::Closed(at) => assert!(
            at.duration_since(answered) >= Duration::from_millis(900),
            "closed after {:?}, before pool_idle_timeout",
            at.duration_since(answered)
        ),
        other => panic!("expected the idle connection closed, saw {other:?}"),
    }
    assert_eq!(gw.client.get(path).await.status, 200);
    assert!(matches!(next(&mut seen).await, Seen::Accepted));
}

/// KooDrive closing a keep-alive connection while it sits idle in the pool costs the next
/// requests nothing: each goes out on a new connection and is answered.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    let (url, mut seen) = keep_alive_upstream(true).await;
    let gw = TestGateway::for_mock_url(&url, "").await;
    let path = "/koodrive/ose/v1/file/info?fileId=1";
    for round in 0..3 {
        assert_eq!(gw.client.get(path).await.status, 200, "request {round}");
        assert!(matches!(next(&mut seen).await, Seen::Accepted), "{round}");
        assert!(
            matches!(next(&mut seen).await, Seen::Request { .. }),
            "{round}"
        );
        // Closed upstream while the connection sits in the gateway's pool.
        assert!(matches!(next(&mut seen).await, Seen::Closed(_)), "{round}");
    }
    assert!(seen.try_recv().is_err(), "nothing more crossed the wire");
}
