//! Do the metrics tell the truth? Each test drives one scenario an operator cares about and
//! checks the documented meaning of the series it touches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::faults::{read_head, Fault, FaultServer};
use crate::support::{within, Mock, Reply, TestGateway, TASK_LIST};

mod breaker;
mod cache_metrics;
mod labels;
mod spans;
mod upstream_metrics;

const TOKEN_MODE: &str = "[auth]\nmode = \"token\"\naccess_token = \"tok-r5a\"\n";

/// The sum of every series whose key starts with `name` and contains each of `labels`.
fn sum(metrics: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Polls `/metrics` until `ready` holds (each scrape is an event the gateway has published).
async fn metrics_until(
    gw: &TestGateway,
    what: &str,
    ready: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    within(what, async {
        loop {
            let metrics = gw.metrics().await;
            if ready(&metrics) {
                return metrics;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn dump(metrics: &HashMap<String, f64>, prefix: &str) -> String {
    let mut lines: Vec<_> = metrics
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Opens a raw HTTP/1.1 connection, sends a GET for `path`, and returns the stream (drop it to
/// hang up).
async fn raw_get(gw: &TestGateway, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}
