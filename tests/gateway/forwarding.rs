//! Method, path, query and body forwarding; streaming; hop-by-hop stripping; HTTP/2 clients.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use crate::support::{within, Client, Mock, Reply, TestGateway, TASK_CREATE};

const TOKEN_MODE: &str = r#"
    [auth]
    mode = "token"
    access_token = "tok-123"
"#;

#[tokio::test]
async fn forwards_method_path_query_and_body_unchanged() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let path = "/koodrive/ose/v1/files/create?b=2&a=%20x&a=1&empty=";
    let request = gw
        .client
        .request(Method::PUT, path)
        .header("content-type", "application/octet-stream")
        .header("x-custom", "kept")
        .body(Full::new(body.clone()))
        .unwrap();
    let response = gw.client.send(request).await;
    assert_eq!(response.status, 200);
    let seen = mock.last();
    assert_eq!(seen.method, Method::PUT);
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), path);
    assert_eq!(seen.body, body);
    assert_eq!(
        seen.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn app_signature_mode_forwards_the_signed_body_whole() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let body = r#"{"taskName":"t1","taskType":0}"#;
    assert_eq!(
        gw.client
            .post_with(TASK_CREATE, &[("content-type", "application/json")], body)
            .await
            .status,
        200
    );
    let seen = mock.last();
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("content-length"), Some("30"));
}

#[tokio::test]
async fn response_body_streams_before_upstream_finishes() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let mock =
        Mock::start(move |_| Reply::json(200, "first-half|second-half").gate(Arc::clone(&held)))
            .await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let request = gw
        .client
        .request(Method::GET, "/koodrive/ose/v1/files/big")
        .body(Full::default())
        .unwrap();
    let response = gw.client.send_streaming(request).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The first half arrives while the upstream still holds the second one back.
    let first = within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first-half|");
    gate.notify_one();
    let rest = within("rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "second-half");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let mock = Mock::start(|_| {
        Reply::ok()
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("trailer", "x-checksum")
            .header("upgrade", "h2c")
            .header("x-end-to-end", "kept")
    })
    .await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let request = gw
        .client
        .request(Method::GET, "/koodrive/ose/v1/files/x")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("upgrade", "websocket")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let response = gw.client.send(request).await;
    assert_eq!(response.status, 200);
    let seen = mock.last();
    for name in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    for name in [
        "x-upstream-hop",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(
            response.headers.get(name).is_none(),
            "{name} reached the client"
        );
    }
    assert_eq!(response.header("x-end-to-end"), "kept");
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let h2 = Client::http2(gw.running().addr);
    let response = h2.get("/koodrive/ose/v1/task/1?x=1").await;
    assert_eq!(response.status, 200);
    let seen = mock.last();
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/koodrive/ose/v1/task/1?x=1"
    );
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.header("host"), Some(mock.addr().to_string().as_str()));
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    for _ in 0..5 {
        assert_eq!(gw.client.get("/koodrive/ose/v1/files/x").await.status, 200);
    }
    assert_eq!(mock.hits(), 5);
    assert_eq!(mock.connections(), 1, "pooled keep-alive connection");
}

/// KooDrive (or something in front of it) framing an answer both ways: hyper reads the body as
/// chunked, so the gateway must not pass the Content-Length on beside the de-chunked body, or
/// the client gets a broken answer (here: none at all).
#[tokio::test]
async fn an_upstream_answer_with_both_framings_reaches_the_client_framed_by_its_chunks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                              Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
                              5\r\nhello\r\n0\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let gw = TestGateway::for_mock_url(&url, "").await;
    let response = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert!(
        response
            .headers
            .get("content-length")
            .map_or(true, |v| v == "5"),
        "{:?}",
        response.headers
    );
}
