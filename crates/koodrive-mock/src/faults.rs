//! A raw-TCP KooDrive that misbehaves on purpose: resets, stalls, garbage, huge bodies, bombs.
//! It answers one request per connection and closes it.
// Test fixtures: a set-up the test got wrong (a bad header in a scripted reply, a port that
// cannot be bound) fails the test loudly rather than being answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Healthy,
    /// Nothing listens: connections are refused.
    Refused,
    /// Reset the first connection before any byte, then be healthy.
    ResetOnce,
    ResetBeforeHeaders,
    /// Part of the status line and headers, then a reset.
    ResetMidHead,
    ResetMidBody,
    StallBeforeHeaders,
    StallMidBody,
    Status(u16),
    ApigThrottle,
    Garbage,
    Huge,
    GzipBomb,
}

pub const HEALTHY_PAGE: &str = r#"{"taskListDtos":[{"taskId":"1486254586942472064","taskName":"healthy","taskType":0,"status":2}],"code":0,"msg":"Success."}"#;

pub struct FaultServer {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    hits: Arc<AtomicUsize>,
    /// The accept loop; none while refusing.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FaultServer {
    pub async fn start(fault: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = FaultServer {
            addr: listener.local_addr().unwrap(),
            fault: Arc::new(Mutex::new(Fault::Healthy)),
            hits: Arc::new(AtomicUsize::new(0)),
            task: Mutex::new(None),
        };
        server.listen(listener);
        server.set(fault).await;
        server
    }

    fn listen(&self, listener: TcpListener) {
        let (mode, count) = (Arc::clone(&self.fault), Arc::clone(&self.hits));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let fault = *mode.lock().unwrap();
                tokio::spawn(answer(stream, fault, n));
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the fault; `Refused` closes the listener, anything after it opens it again on
    /// the same address.
    pub async fn set(&self, fault: Fault) {
        let running = self.task.lock().unwrap().take();
        match (fault, running) {
            (Fault::Refused, Some(task)) => {
                task.abort();
                let _ = task.await;
            }
            (Fault::Refused, None) => {}
            (_, Some(task)) => *self.task.lock().unwrap() = Some(task),
            (_, None) => self.listen(TcpListener::bind(self.addr).await.unwrap()),
        }
        *self.fault.lock().unwrap() = fault;
    }

    /// Connections accepted (one request each).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// Reads a request head off a raw upstream's connection; false when the connection ended first.
pub async fn read_head(stream: &mut TcpStream) -> bool {
    read_head_into(stream, &mut Vec::new()).await.is_some()
}

/// Reads from a keep-alive connection into `buffered` (which may already hold bytes read past
/// the previous request) until it holds a whole request head; returns the head's length, blank
/// line included, with whatever came after it left in `buffered`. `None` when the connection
/// ended first.
pub async fn read_head_into(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<usize> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffered.extend_from_slice(&buf[..n]),
        }
    }
}

#[allow(deprecated)]
fn reset(stream: TcpStream) {
    // SO_LINGER 0: close with RST instead of FIN.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn head(status: u16, length: usize, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n{extra}\r\n"
    )
}

/// 64 gzip members of 1 MiB of spaces each: 64 MiB decoded from about 64 KiB.
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b' '; 1024 * 1024]).unwrap();
        encoder.finish().unwrap().repeat(64)
    })
}

async fn answer(mut stream: TcpStream, fault: Fault, n: usize) {
    read_head(&mut stream).await;
    let stall = Duration::from_secs(60);
    match fault {
        Fault::ResetBeforeHeaders => reset(stream),
        Fault::ResetOnce if n == 0 => reset(stream),
        Fault::Healthy | Fault::Refused | Fault::ResetOnce => {
            let _ = stream
                .write_all(
                    format!("{}{HEALTHY_PAGE}", head(200, HEALTHY_PAGE.len(), "")).as_bytes(),
                )
                .await;
        }
        Fault::ResetMidHead => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: appl")
                .await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(stream);
        }
        Fault::ResetMidBody => {
            let _ = stream
                .write_all(format!("{}{{\"taskListDtos\":[", head(200, 10_000, "")).as_bytes())
                .await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(stream);
        }
        Fault::StallBeforeHeaders => tokio::time::sleep(stall).await,
        Fault::StallMidBody => {
            let _ = stream
                .write_all(format!("{}{{\"taskListDtos\":[", head(200, 10_000, "")).as_bytes())
                .await;
            tokio::time::sleep(stall).await;
        }
        Fault::Status(status) => {
            let body = format!(r#"{{"code":13000{status},"msg":"failing on purpose"}}"#);
            let _ = stream
                .write_all(format!("{}{body}", head(status, body.len(), "")).as_bytes())
                .await;
        }
        Fault::ApigThrottle => {
            let body = r#"{"error_code":"APIG.0308","error_msg":"throttled","request_id":"r-1"}"#;
            let _ = stream
                .write_all(format!("{}{body}", head(400, body.len(), "")).as_bytes())
                .await;
        }
        Fault::Garbage => {
            let _ = stream
                .write_all(b"\x00\x01\x02 this is not HTTP \r\n\r\n")
                .await;
        }
        Fault::Huge => {
            let size = 50 * 1024 * 1024;
            if stream
                .write_all(head(200, size, "").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..size / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Fault::GzipBomb => {
            let body = bomb();
            let _ = stream
                .write_all(head(200, body.len(), "content-encoding: gzip\r\n").as_bytes())
                .await;
            let _ = stream.write_all(body).await;
        }
    }
}
