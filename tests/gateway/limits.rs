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

mod budgets;
mod connections;

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

/// The status and text of the answer on a raw connection (its head and what came with it).
async fn answer_of(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = within("an answer", stream.read(&mut buf)).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
