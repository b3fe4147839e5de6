//! Client request heads: Host, target forms, expectations, cookies and Connection on their hop.

use super::*;

/// RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any request message that
/// contains more than one Host header field". nginx: "client sent HTTP/1.1 request without
/// "Host" header" / "client sent duplicate host header", both 400.
#[tokio::test]
async fn an_http11_request_without_host_is_400() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let raw = "GET /koodrive/ose/v1/files/x HTTP/1.1\r\nConnection: close\r\n\r\n";
    let answer = exchange(&gw, raw.as_bytes()).await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 400"),
        "no Host -> {}; upstream hits {}",
        status_line(&answer),
        mock.hits()
    );
}

#[tokio::test]
async fn a_request_with_two_hosts_is_400() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let raw =
        "GET /koodrive/ose/v1/files/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    let answer = exchange(&gw, raw.as_bytes()).await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 400"),
        "two Hosts -> {}; upstream hits {}",
        status_line(&answer),
        mock.hits()
    );
}

/// `OPTIONS *` is forwarded as asterisk-form; an absolute-form target's authority is never
/// used (no open proxy): only its path and query go to KooDrive, under KooDrive's Host; a
/// fragment is not sent.
#[tokio::test]
async fn asterisk_and_absolute_form_targets_go_to_koodrive_only() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let host = mock.addr().to_string();
    let cases: [(&[u8], &str); 3] = [
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "*"),
        (b"GET http://evil.example:81 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "/"),
        (
            b"GET http://evil.example:81/koodrive/ose/v1/files/x?a=1#frag HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n",
            "/koodrive/ose/v1/files/x?a=1",
        ),
    ];
    for (raw, target) in cases {
        let answer = exchange(&gw, raw).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let seen = mock.last();
        assert_eq!(seen.uri.to_string(), target);
        assert_eq!(seen.header("host"), Some(host.as_str()));
    }
}

/// A client that sends `Expect: 100-continue` and waits for the 100 before its body, in both
/// the signed (body read whole) and the streamed mode.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_needed() {
    for overlay in ["", TOKEN_MODE] {
        let mock = Mock::ok().await;
        let gw = TestGateway::for_mock(&mock, overlay).await;
        let mut stream = TcpStream::connect(gw.running().addr).await.unwrap();
        stream
            .write_all(
                b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = within("a 100 Continue", stream.read(&mut buf))
            .await
            .unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(first.starts_with("HTTP/1.1 100"), "{overlay:?}: {first}");
        stream.write_all(b"{}").await.unwrap();
        let n = within("the answer", stream.read(&mut buf)).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "{overlay:?}: {answer}");
        assert_eq!(mock.last().body, "{}");
    }
}

/// HTTP/2 clients split Cookie into one field per crumb (RFC 9113 section 8.2.3); a proxy to
/// HTTP/1.1 must join them with "; " into one field.
#[tokio::test]
async fn http2_cookie_crumbs_are_joined_for_the_http1_upstream() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let h2 = crate::support::Client::http2(gw.running().addr);
    let request = h2
        .request(Method::GET, "/koodrive/ose/v1/files/x")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::default())
        .unwrap();
    assert_eq!(h2.send(request).await.status, 200);
    let cookies: Vec<_> = mock
        .last()
        .headers
        .get_all("cookie")
        .iter()
        .cloned()
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0], "a=1; b=2");
}

/// `Connection: close` from the client: answered, then closed; from the upstream: the client
/// connection stays open and the header is not passed on.
#[tokio::test]
async fn connection_close_stays_on_its_hop() {
    let mock = Mock::start(|_| Reply::ok().header("connection", "close")).await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let answer = exchange(
        &gw,
        b"GET /koodrive/ose/v1/files/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Two requests pipelined, upstream closing after each: both answered on one connection.
    let mut stream = TcpStream::connect(gw.running().addr).await.unwrap();
    stream
        .write_all(
            b"GET /koodrive/ose/v1/files/a HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /koodrive/ose/v1/files/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within("two answers", stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
}

/// nginx clears `Expect` from proxied requests (`proxy_set_header Expect ""` is in its default
/// set) and Envoy answers `100-continue` itself and removes the header. The gateway answers the
/// expectation itself too (hyper sends the 100 when the body is first read; in app_signature
/// mode the body is read whole before KooDrive is called), then forwards the expectation it has
/// already met: KooDrive, or an API gateway in front of it, may answer 417 to it.
#[tokio::test]
async fn an_expectation_the_gateway_met_is_not_forwarded() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let answer = exchange(
        &gw,
        b"POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        mock.last().header("expect"),
        None,
        "Expect reached KooDrive"
    );
}
