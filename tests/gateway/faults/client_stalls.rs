//! Clients that stall their uploads get 408, free their place and never open the breaker.

use super::*;

/// A client that stops sending its body is at fault, not KooDrive: once upstream.timeout passes it
/// gets a 408 of the gateway's, and the breaker (here opening after one failure) stays closed.
#[tokio::test]
async fn a_client_stalling_its_upload_gets_408_and_does_not_open_the_breaker() {
    let mock = Mock::with_slow_path(Duration::from_secs(3)).await;
    let overlay = r#"
        [upstream]
        timeout = "1s"
        breaker_failures = 1
        breaker_cooldown = "60s"
        [auth]
        mode = "token"
        access_token = "t"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // One chunk, then nothing: the sender is kept, so the body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Bytes::from_static(b"{\"")).await.unwrap();
    let upload = gw
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .body(ChannelBody::new(rx))
        .unwrap();
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let started = Instant::now();
    let response = within("the stalled upload's answer", raw.request(upload))
        .await
        .unwrap();
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    let status = response.status();
    let marker = response.headers()["koodrive-gateway-error"].clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert_eq!(marker, "GATEWAY_CLIENT_BODY_TIMEOUT");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], "GATEWAY_CLIENT_BODY_TIMEOUT");
    drop(tx);

    // Another client right after: KooDrive is called, not refused by an open breaker.
    let other = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(gw.metrics().await["koodrive_gateway_breaker_open"], 0.0);

    // A whole body sent and KooDrive slow to answer: KooDrive's timeout, as ever.
    let slow = gw
        .client
        .post_with("/koodrive/ose/v1/task/slow", &[], "{}")
        .await;
    assert_eq!(slow.json()["code"], "GATEWAY_UPSTREAM_TIMEOUT");
    assert_eq!(gw.metrics().await["koodrive_gateway_breaker_open"], 1.0);
}

/// A body read whole to be signed is bounded in time too: a client that promises a body and
/// stops sending it gets the 408 within upstream.timeout, and its place in flight (here the only
/// one) is free for the next request. KooDrive never hears of it.
#[tokio::test]
async fn a_client_stalling_a_body_to_be_signed_gets_408_and_frees_its_place() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mock = Mock::ok().await;
    let overlay = "[server]\nmax_in_flight = 1\n[upstream]\ntimeout = \"1s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let mut stalled = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    let head =
        "POST /koodrive/ose/v1/task/create HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    within(
        "the stalled body's answer",
        stalled.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("GATEWAY_CLIENT_BODY_TIMEOUT"), "{answer}");
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "{:?}",
        started.elapsed()
    );
    let other = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(mock.hits(), 1, "only the second request reached KooDrive");
}
