//! Clients that read slowly or stop reading: they hold their own upstream back and never open the
//! breaker against a healthy KooDrive.

use super::*;

// ---------------------------------------------------------------------------------------------
// A slow-reading client that makes the response body's deadline fire must not be recorded as a
// KooDrive failure in the circuit breaker: else a few slow downloads open the breaker against a
// healthy KooDrive, and every other caller gets 503 GATEWAY_UPSTREAM_CIRCUIT_OPEN.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slow_reading_clients_do_not_open_the_breaker_against_a_healthy_upstream() {
    // 32 MiB: far more than the loopback socket buffers, so the gateway must wait on the client.
    let big = Bytes::from(vec![b'x'; 32 * 1024 * 1024]);
    let mock = Mock::start(move |seen| match seen.uri.path().ends_with("/big") {
        true => Reply::json(200, big.clone()).header("content-type", "application/octet-stream"),
        false => Reply::ok(),
    })
    .await;
    let overlay = format!(
        "{TOKEN_MODE}[upstream]\ntimeout = \"1s\"\nbreaker_failures = 2\nbreaker_cooldown = \"30s\"\n"
    );
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    for _ in 0..2 {
        let request = gw
            .client
            .request(Method::GET, "/koodrive/ose/v1/files/big")
            .body(Full::default())
            .unwrap();
        let response = gw.client.send_streaming(request).await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // A client on a slow link: it takes a first chunk, then falls behind.
        let _ = within("a first chunk", body.frame()).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Then it reads on; the gateway cuts it off (documented), fine.
        let _ = within("the rest", body.collect()).await;
    }
    // KooDrive answered every byte it was asked for at once: nothing failed on its side.
    let response = gw.client.get("/koodrive/ose/v1/files/small").await;
    assert_eq!(
        response.status,
        200,
        "a healthy KooDrive is refused after two slow readers: {} {:?}",
        response.text(),
        response.headers.get("koodrive-gateway-error")
    );
}

/// A client that stops reading a large streamed answer: the gateway must stop reading the
/// upstream too (backpressure), holding a bounded amount in memory.
#[tokio::test]
async fn a_client_that_stops_reading_holds_the_upstream_back() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        if !read_head(&mut stream).await {
            return;
        }
        let size = 256 * 1024 * 1024;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let overlay = format!("{TOKEN_MODE}[upstream]\ntimeout = \"30s\"\n");
    let gw = TestGateway::for_mock_url(&url, &overlay).await;
    let mut client = TcpStream::connect(gw.running().addr).await.unwrap();
    client
        .write_all(b"GET /koodrive/ose/v1/files/huge HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let _ = within("the head", client.read(&mut buf)).await.unwrap();
    // Wait until the upstream's writes stop moving (the chain is full), then measure.
    let mut last = 0;
    let mut stable = 0;
    while stable < 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written.load(Ordering::SeqCst);
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        assert!(
            now < 128 * 1024 * 1024,
            "the upstream was read on and on: {now}"
        );
    }
    // Socket buffers on both sides (several MiB on loopback) plus hyper's buffers.
    assert!(last < 32 * 1024 * 1024, "{last}");
}
