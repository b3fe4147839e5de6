//! Soak for `bench/soak.sh`: a mixed load against a real gateway process for a number of
//! minutes, with faults injected between the gateway and the embedded demo KooDrive.
//!
//! ```text
//! soak --gateway target/release/koodrive-gateway --work-dir /tmp/soak --minutes 10
//! ```
//!
//! It starts, all on 127.0.0.1: the demo mock KooDrive; in front of it a fault front of its own
//! (hyper, HTTP/1.1) that counts every upstream call and, for `--fault-rate` of them, answers
//! 503, waits longer than the gateway's `upstream.timeout`, or drops the connection without an
//! answer; and the gateway binary as a child process (RSS read from `/proc/<pid>/status`).
//! `--workers` loops then send task-list GETs (several queries, cursors, eight identities, some
//! in zh-CN), task GETs and ~1% task creations until the deadline, each request bounded by
//! `REQUEST_LIMIT`: a request without a response within it counts as unanswered.
//! One line per `--report-secs`, then a summary block; the gateway is stopped with SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use koodrive_mock::{MockAuth, MockKooDrive};
use tokio::net::TcpListener;

mod front;
mod gateway;
mod load;
mod report;
mod stats;

use front::{serve_front, Front};
use gateway::{proc_kib, summarize_log, Gateway};
use load::{worker, Shared};
use report::{kib, secs, Summary};
use stats::Stats;

/// A client request with no response (headers and body) within this is unanswered.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// The gateway's `upstream.timeout`; the delay fault waits longer than this.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const DELAY_FAULT: Duration = Duration::from_secs(3);
/// The mock refuses creations past 100,000; stay well below.
const MAX_CREATES: u64 = 50_000;
const LIST: &str = "/koodrive/ose/v1/task/list";
const USERS: [&str; 8] = [
    "",
    "1505084218764547201",
    "1505084218764547202",
    "1505084218764547203",
    "1505084218764547204",
    "1505084218764547205",
    "1505084218764547206",
    "1505084218764547207",
];
const QUERIES: [&str; 5] = [
    "taskType=0&pageSize=20",
    "status=1,2&pageSize=10",
    "status=2&pageSize=50",
    "pageSize=5",
    "status=3&taskType=0&pageSize=20",
];

#[derive(Debug, Parser)]
struct Cli {
    /// How long the load runs, warm-up included (fractions allowed: 0.5 is 30 s).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    #[arg(long, default_value = "target/release/koodrive-gateway")]
    gateway: PathBuf,
    /// Gateway config and log go here.
    #[arg(long)]
    work_dir: PathBuf,
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Fraction of upstream calls that get a fault (split evenly: 503, delay, drop).
    #[arg(long, default_value_t = 0.02)]
    fault_rate: f64,
    /// RSS "start" is read after this much load: long enough for the task-list cache to fill
    /// up to `cache.max_bytes` (about 30 s here) and for its first generation of pages to be
    /// evicted and expire (RSS rises by about 15 MiB while that generation's memory is freed
    /// piecemeal among its successors, and settles by about 130 s), so that "flat" measures
    /// leaks, not the cache doing its job.
    #[arg(long, default_value_t = 150)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 60)]
    report_secs: u64,
    /// Hard cap on client requests (the run also ends at the deadline).
    #[arg(long, default_value_t = 100_000_000)]
    max_requests: u64,
}

type Body = Full<Bytes>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.work_dir).context("work dir")?;
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(cli.workers * 2)
        .build_http();

    // Upstream: the demo mock behind the fault front.
    let auth = MockAuth {
        app_id: "demo-app".into(),
        app_secret: "demo-app-secret".into(),
        tokens: Vec::new(),
    };
    let mock = MockKooDrive::start(TcpListener::bind("127.0.0.1:0").await?, auth).await?;
    let front = Arc::new(Front {
        mock: mock.addr(),
        client: client.clone(),
        fault_rate: cli.fault_rate,
        calls: AtomicU64::new(0),
        faults: Default::default(),
    });
    let front_listener = TcpListener::bind("127.0.0.1:0").await?;
    let front_addr = front_listener.local_addr()?;
    tokio::spawn(serve_front(front_listener, Arc::clone(&front)));

    // The gateway, as its own process.
    let mut gateway = Gateway::start(&cli.gateway, &cli.work_dir, front_addr).await?;
    println!(
        "soak: gateway pid {} on {} (admin {}), fault front {front_addr} -> mock {}, {} workers, {} min, fault rate {:.1}%",
        gateway.pid, gateway.addr, gateway.admin, mock.addr(), cli.workers, cli.minutes, cli.fault_rate * 100.0
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(cli.minutes.max(0.0) * 60.0);
    let shared = Arc::new(Shared {
        stats: Mutex::new(Stats::default()),
        sent: AtomicU64::new(0),
        creates: AtomicU64::new(0),
        max_requests: cli.max_requests,
    });
    let mut workers = Vec::new();
    for id in 0..cli.workers {
        let (client, shared, addr) = (client.clone(), Arc::clone(&shared), gateway.addr);
        workers.push(tokio::spawn(worker(
            id as u64, client, addr, deadline, shared,
        )));
    }

    // Progress: RSS after warm-up, then one line per report interval.
    let warmup = Duration::from_secs(cli.warmup_secs);
    let mut rss_start = None;
    let mut next_report = started + Duration::from_secs(cli.report_secs.max(1));
    let mut last = (started, 0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut wake = deadline.min(next_report);
        if rss_start.is_none() {
            wake = wake.min(started + warmup);
        }
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if rss_start.is_none() && now >= started + warmup {
            rss_start = proc_kib(gateway.pid, "VmRSS");
            println!(
                "[{:>6.1}s] warm-up done: gateway VmRSS {} (this is the start figure)",
                secs(started, now),
                kib(rss_start)
            );
        }
        if now >= next_report && now < deadline {
            next_report += Duration::from_secs(cli.report_secs.max(1));
            let calls = front.calls.load(Ordering::SeqCst);
            let mut stats = lock(&shared.stats);
            let window = std::mem::take(&mut stats.window);
            let total = stats.requests;
            drop(stats);
            let rate = (total - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            println!(
                "[{:>6.1}s] requests {total} ({rate:.0}/s) errors {} unanswered {} p50 {:.2} ms p99 {:.2} ms upstream calls +{} VmRSS {}",
                secs(started, now),
                window.errors,
                window.unanswered,
                window.hist.quantile_ms(0.50),
                window.hist.quantile_ms(0.99),
                calls - last.2,
                kib(proc_kib(gateway.pid, "VmRSS"))
            );
            last = (now, total, calls);
        }
    }

    // Workers stop at the deadline; each request is bounded, so this is too.
    for w in workers {
        if tokio::time::timeout(REQUEST_LIMIT * 2, w).await.is_err() {
            println!("soak: a worker did not stop within {:?}", REQUEST_LIMIT * 2);
        }
    }
    let elapsed = started.elapsed();
    let rss_end = proc_kib(gateway.pid, "VmRSS");
    let rss_peak = proc_kib(gateway.pid, "VmHWM");
    let calls = front.calls.load(Ordering::SeqCst);
    let mock_requests = mock.requests();
    let exit = gateway.stop().await;
    let log = summarize_log(&gateway.log);

    let stats = std::mem::take(&mut *lock(&shared.stats));
    let faults = lock(&front.faults).clone();
    let summary = Summary {
        cli: &cli,
        elapsed,
        stats,
        calls,
        mock_requests,
        faults,
        rss_start,
        rss_end,
        rss_peak,
        exit,
        log,
    };
    summary.print();
    mock.shutdown().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
