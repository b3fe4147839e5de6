//! Health, readiness, graceful drain, and slow clients.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{within, Mock, Reply, TestGateway};

#[tokio::test]
async fn health_and_readiness_answer_on_the_admin_port() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let health = gw.admin.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(gw.admin.get("/readyz").await.status, 200);
    assert_eq!(gw.admin.get("/nope").await.status, 404);
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn shutdown_drains_a_slow_request_and_turns_unready() {
    let mock = Mock::start(|_| Reply::ok().delay(Duration::from_millis(1500))).await;
    let mut gw = TestGateway::for_mock(&mock, "").await;
    let addr = gw.running().addr;
    let client = gw.client.clone();
    let slow = tokio::spawn(async move { client.get("/koodrive/ose/v1/task/slow").await });
    mock.wait_for_hits(1).await;

    let drained = tokio::spawn(gw.shutdown());
    // Readiness flips to 503 while the request drains, and new connections are refused.
    within("readyz 503", async {
        while gw.admin.get("/readyz").await.status != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within("listener closed", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let response = within("the slow request", slow).await.unwrap();
    assert_eq!(response.status, 200);
    within("drain", drained).await.unwrap();
}

#[tokio::test]
async fn a_client_sending_headers_too_slowly_is_disconnected() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[server]\nheader_read_timeout = \"300ms\"").await;
    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /koodrive/ose/v1/task/list HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The gateway closes the connection (possibly after a 408) instead of waiting forever.
    let _ = within("the disconnect", stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(mock.hits(), 0);
}

/// A burst of connects that outruns the accept loop queues in the kernel instead of losing SYNs
/// (each lost one costs its client a whole 1 s retransmission): both listeners listen with a
/// backlog of 1024 (as the kernel caps it), not the 128 of tokio's `TcpListener::bind`.
#[tokio::test]
async fn listeners_queue_a_burst_of_connections() {
    let ss = crate::support::packages::require("ss", "iproute2");
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096);
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    for addr in [gw.running().addr, gw.running().admin_addr] {
        let output = std::process::Command::new(&ss)
            .args(["-ltnH", &format!("sport = :{}", addr.port())])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        // State, Recv-Q, Send-Q (a listener's backlog), local address, peer address.
        let backlog: Vec<u32> = text
            .lines()
            .filter(|line| line.contains(&addr.to_string()))
            .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
            .collect();
        assert_eq!(backlog, [1024.min(somaxconn)], "{addr}: {text}");
    }
}
