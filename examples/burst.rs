//! Load helpers for `bench/compare.sh` that wrk cannot do: a bounded number of requests, each
//! counted by status and `Cache-Status`.
//!
//! ```text
//! burst collapse --addr 127.0.0.1:GW --path '/koodrive/ose/v1/task/list?...' \
//!       --count 1000 --upstream-listen 127.0.0.1:UP --delay-ms 200 --body-file page.json
//! burst fill --addr 127.0.0.1:GW --path '/koodrive/ose/v1/task/list?pageSize=50' \
//!       --count 10000 --concurrency 16
//! ```
//!
//! `collapse` runs its own slow upstream on `--upstream-listen` (the gateway under test must be
//! configured with that address): it answers every request after `--delay-ms` and counts them.
//! nginx cannot delay a response without extra modules, and a delay is what makes 1,000 requests
//! *concurrent misses* rather than one miss followed by cache hits. All `--count` connections are
//! opened first, then a barrier releases one GET on each at once. It prints the status counts,
//! the `Cache-Status` classes and how many requests reached the upstream.
//!
//! `fill` walks `pageCursor=1..=count` (distinct cache keys) over `--concurrency` keep-alive
//! connections, one request at a time on each; it stops by itself after `count` requests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{header, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// Upper bound on any one mode's whole run: the bench never hangs.
const RUN_LIMIT: Duration = Duration::from_secs(120);
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Fire `count` identical GETs at once, with a slow upstream of our own behind the gateway.
    Collapse {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long)]
        upstream_listen: SocketAddr,
        #[arg(long, default_value_t = 200)]
        delay_ms: u64,
        #[arg(long)]
        body_file: PathBuf,
    },
    /// Send `count` GETs with distinct `pageCursor` values, `concurrency` at a time.
    Fill {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

/// Tally of answers: status code and the `Cache-Status` class (without the changing `ttl=`).
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, usize>,
    cache: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, status: String, cache: String) {
        *self.statuses.entry(status).or_default() += 1;
        *self.cache.entry(cache).or_default() += 1;
    }

    fn print(&self) {
        let join = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("statuses: {}", join(&self.statuses));
        println!("cache_status: {}", join(&self.cache));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let run = async {
        match cli.mode {
            Mode::Collapse {
                addr,
                path,
                count,
                upstream_listen,
                delay_ms,
                body_file,
            } => {
                let body = Bytes::from(std::fs::read(body_file)?);
                collapse(addr, path, count, upstream_listen, delay_ms, body).await
            }
            Mode::Fill {
                addr,
                path,
                count,
                concurrency,
            } => fill(addr, path, count, concurrency).await,
        }
    };
    tokio::time::timeout(RUN_LIMIT, run)
        .await
        .map_err(|_| format!("burst: gave up after {RUN_LIMIT:?}"))?
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn collapse(
    addr: SocketAddr,
    path: String,
    count: usize,
    upstream_listen: SocketAddr,
    delay_ms: u64,
    body: Bytes,
) -> Result<(), Box<dyn std::error::Error>> {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind(upstream_listen).await?;
    tokio::spawn(slow_upstream(
        listener,
        Arc::clone(&hits),
        Duration::from_millis(delay_ms),
        body,
    ));

    let barrier = Arc::new(Barrier::new(count));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (barrier, tally, path) = (Arc::clone(&barrier), Arc::clone(&tally), path.clone());
        tasks.push(tokio::spawn(async move {
            let connected = tokio::time::timeout(CONNECT_LIMIT, connect(addr)).await;
            // Every task reaches the barrier, connected or not, so that nobody waits forever.
            barrier.wait().await;
            let (status, cache) = match connected {
                Ok(Ok(mut sender)) => get(&mut sender, addr, &path)
                    .await
                    .unwrap_or_else(|e| (format!("error({e})"), "-".into())),
                Ok(Err(e)) => (format!("connect-error({e})"), "-".into()),
                Err(_) => ("connect-timeout".into(), "-".into()),
            };
            lock(&tally).add(status, cache);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    lock(&tally).print();
    println!("upstream_requests: {}", hits.load(Ordering::SeqCst));
    println!("elapsed_ms: {}", elapsed.as_millis());
    Ok(())
}

async fn fill(
    addr: SocketAddr,
    path: String,
    count: usize,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let next = Arc::new(AtomicUsize::new(1));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, tally, path) = (Arc::clone(&next), Arc::clone(&tally), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = tokio::time::timeout(CONNECT_LIMIT, connect(addr))
                .await
                .map_err(|_| "connect timed out")??;
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n > count {
                    return Ok::<(), BoxError>(());
                }
                let target = format!("{path}{sep}pageCursor={n}");
                let (status, cache) = get(&mut sender, addr, &target).await?;
                lock(&tally).add(status, cache);
            }
        }));
    }
    for task in tasks {
        task.await?.map_err(|e| e.to_string())?;
    }
    lock(&tally).print();
    println!("elapsed_ms: {}", started.elapsed().as_millis());
    Ok(())
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One GET on an open connection: its status and `Cache-Status` class; the body is read whole.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<(String, String), BoxError> {
    sender.ready().await?;
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16().to_string();
    let cache = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "none".to_owned(), cache_class);
    response.into_body().collect().await?;
    Ok((status, cache))
}

/// `koodrive-gateway; fwd=miss; collapsed` -> `fwd=miss,collapsed`; `ttl=` is dropped.
fn cache_class(value: &str) -> String {
    value
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|part| !part.starts_with("ttl="))
        .collect::<Vec<_>>()
        .join(",")
}

/// Answers every request with `body` after `delay`, counting requests.
async fn slow_upstream(
    listener: TcpListener,
    hits: Arc<AtomicUsize>,
    delay: Duration,
    body: Bytes,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (hits, body) = (Arc::clone(&hits), body.clone());
        let service = hyper::service::service_fn(move |_request| {
            let (hits, body) = (Arc::clone(&hits), body.clone());
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|p| p.into_inner())
}
