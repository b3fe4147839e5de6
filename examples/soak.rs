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

// ------------------------------------------------------------------------------------------------
// The load.

struct Shared {
    stats: Mutex<Stats>,
    sent: AtomicU64,
    creates: AtomicU64,
    max_requests: u64,
}

/// What a worker learned from list pages, to ask for real task ids and next pages.
#[derive(Default)]
struct Seen {
    task_ids: BTreeMap<usize, Vec<String>>,
    cursors: BTreeMap<(usize, usize), String>,
}

async fn worker(
    id: u64,
    client: Client<HttpConnector, Body>,
    addr: SocketAddr,
    deadline: Instant,
    shared: Arc<Shared>,
) {
    let mut rng = fastrand::Rng::with_seed(0x50a4 + id);
    let mut seen = Seen::default();
    while Instant::now() < deadline {
        if shared.sent.fetch_add(1, Ordering::SeqCst) >= shared.max_requests {
            return;
        }
        let user = rng.usize(..USERS.len());
        let zh = user % 2 == 1 && rng.bool();
        let roll = rng.f64();
        let (kind, method, target, body, list_query) =
            if roll < 0.01 && shared.creates.fetch_add(1, Ordering::SeqCst) < MAX_CREATES {
                let body = Bytes::from_static(br#"{"taskName":"soak","taskType":0}"#);
                let target = "/koodrive/ose/v1/task/create".to_owned();
                ("create", Method::POST, target, body, None)
            } else if roll < 0.10 {
                let task_id = seen
                    .task_ids
                    .get(&user)
                    .and_then(|ids| (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone()))
                    .unwrap_or_else(|| "1486254586942400000".to_owned());
                let target = format!("/koodrive/ose/v1/task/{task_id}");
                ("get", Method::GET, target, Bytes::new(), None)
            } else {
                let q = rng.usize(..QUERIES.len());
                let mut target = format!("{LIST}?{}", QUERIES[q]);
                if rng.u8(..100) < 20 {
                    if let Some(cursor) = seen.cursors.get(&(user, q)) {
                        target.push_str(&format!("&pageCursor={cursor}"));
                    }
                }
                ("list", Method::GET, target, Bytes::new(), Some(q))
            };

        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{target}"))
            .header(header::CONTENT_TYPE, "application/json");
        if !USERS[user].is_empty() {
            request = request.header("x-user-id", USERS[user]);
        }
        if zh {
            request = request.header("language", "zh-CN");
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(e) => {
                lock(&shared.stats).unanswered(kind, format!("not sent: {e}"));
                continue;
            }
        };
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_LIMIT, exchange(&client, request)).await;
        let latency = sent.elapsed();
        let answer = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                lock(&shared.stats).unanswered(kind, format!("no response ({})", error_kind(&*e)));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                lock(&shared.stats).unanswered(kind, format!("timeout {REQUEST_LIMIT:?}"));
                continue;
            }
        };
        // Learn ids and cursors from a tenth of the successful list pages.
        if let (Some(q), true) = (list_query, answer.status == StatusCode::OK) {
            if rng.u8(..10) == 0 {
                learn(&mut seen, user, q, &answer.body);
            }
        }
        lock(&shared.stats).answered(kind, &answer, latency);
    }
}

struct Answer {
    status: StatusCode,
    gateway_error: Option<String>,
    cache: Option<String>,
    body: Bytes,
}

async fn exchange(
    client: &Client<HttpConnector, Body>,
    request: Request<Body>,
) -> Result<Answer, BoxError> {
    let response = client.request(request).await?;
    let text = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, gateway_error, cache) = (
        response.status(),
        text("koodrive-gateway-error"),
        text("cache-status"),
    );
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        gateway_error,
        cache,
        body,
    })
}

fn learn(seen: &mut Seen, user: usize, query: usize, body: &[u8]) {
    let Ok(page) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    // The gateway answers ids and cursors as strings; KooDrive's wire shape has numbers.
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match page.get("nextCursor").and_then(text) {
        Some(next) => seen.cursors.insert((user, query), next),
        None => seen.cursors.remove(&(user, query)),
    };
    let ids = seen.task_ids.entry(user).or_default();
    let dtos = page
        .get("taskList")
        .or_else(|| page.get("taskListDtos"))
        .and_then(|v| v.as_array());
    let id_of = |t: &serde_json::Value| t.get("taskId").and_then(text);
    for id in dtos.into_iter().flatten().filter_map(id_of) {
        if ids.len() >= 64 {
            ids.remove(0);
        }
        ids.push(id);
    }
}

/// The innermost cause of a client error, shortened to a stable label.
fn error_kind(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string().chars().take(60).collect()
}

// ------------------------------------------------------------------------------------------------
// Tallies.

#[derive(Default)]
struct Stats {
    requests: u64,
    kinds: BTreeMap<String, u64>,
    classes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// The first body seen for each error kind, shortened.
    samples: BTreeMap<String, String>,
    cache: BTreeMap<String, u64>,
    unanswered: BTreeMap<String, u64>,
    slow: u64,
    hist: Hist,
    window: Window,
}

/// The figures of one report interval.
#[derive(Default)]
struct Window {
    errors: u64,
    unanswered: u64,
    hist: Hist,
}

impl Stats {
    fn answered(&mut self, kind: &str, answer: &Answer, latency: Duration) {
        self.requests += 1;
        let status = answer.status.as_u16();
        *self
            .kinds
            .entry(format!("{kind} {}xx", status / 100))
            .or_default() += 1;
        *self
            .classes
            .entry(format!("{}xx", status / 100))
            .or_default() += 1;
        if status >= 400 {
            let label = match &answer.gateway_error {
                Some(code) => format!("{code} ({status})"),
                None => format!("koodrive {status} ({kind})"),
            };
            if !self.samples.contains_key(&label) {
                let body = String::from_utf8_lossy(&answer.body);
                let sample = body.chars().take(120).collect();
                self.samples.insert(label.clone(), sample);
            }
            *self.errors.entry(label).or_default() += 1;
            self.window.errors += 1;
        }
        if let Some(cache) = &answer.cache {
            *self.cache.entry(cache_class(cache)).or_default() += 1;
        }
        if latency > UPSTREAM_TIMEOUT + Duration::from_millis(500) {
            self.slow += 1;
        }
        self.hist.add(latency);
        self.window.hist.add(latency);
    }

    fn unanswered(&mut self, kind: &str, why: String) {
        self.requests += 1;
        *self.kinds.entry(format!("{kind} unanswered")).or_default() += 1;
        *self.unanswered.entry(why).or_default() += 1;
        self.window.unanswered += 1;
    }
}

/// `koodrive-gateway; fwd=miss; stored` -> `fwd=miss,stored`; `ttl=` is dropped.
fn cache_class(value: &str) -> String {
    value
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|part| !part.starts_with("ttl="))
        .collect::<Vec<_>>()
        .join(",")
}

/// Log-scale latency histogram, ~2% resolution, 1 us to hours.
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max_us: u64,
}

const PER_E: f64 = 50.0;

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; 1200],
            n: 0,
            max_us: 0,
        }
    }
}

impl Hist {
    fn add(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = ((us as f64 + 1.0).ln() * PER_E) as usize;
        let last = self.counts.len() - 1;
        self.counts[bucket.min(last)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let target = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= target {
                let us = ((bucket as f64 + 0.5) / PER_E).exp() - 1.0;
                return us.min(self.max_us as f64) / 1000.0;
            }
        }
        0.0
    }
}

// ------------------------------------------------------------------------------------------------
// The fault front between the gateway and the mock.

struct Front {
    mock: SocketAddr,
    client: Client<HttpConnector, Body>,
    fault_rate: f64,
    calls: AtomicU64,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

async fn serve_front(listener: TcpListener, front: Arc<Front>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let front = Arc::clone(&front);
        let service = hyper::service::service_fn(move |request| {
            let front = Arc::clone(&front);
            async move { front.handle(request).await }
        });
        tokio::spawn(async move {
            // An error here is a dropped connection: the drop fault, or the gateway hanging up.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Front {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, FrontError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let roll = fastrand::f64() * 3.0;
        let fault = if roll < self.fault_rate {
            "503"
        } else if roll < 2.0 * self.fault_rate {
            "delay"
        } else if roll < 3.0 * self.fault_rate {
            "drop"
        } else {
            ""
        };
        if !fault.is_empty() {
            *lock(&self.faults).entry(fault).or_default() += 1;
        }
        match fault {
            "503" => {
                let body = r#"{"code":13000503,"msg":"soak: injected 503"}"#;
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            "delay" => tokio::time::sleep(DELAY_FAULT).await,
            "drop" => return Err(FrontError("soak: injected connection drop".into())),
            _ => {}
        }
        self.forward(request)
            .await
            .map_err(|e| FrontError(format!("soak: forwarding to the mock: {e}")))
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Response<Body>, BoxError> {
        let (mut parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{}{path}", self.mock).parse()?;
        let response = self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

/// Returned by the front's service: hyper then closes the connection without an answer.
#[derive(Debug)]
struct FrontError(String);

impl std::fmt::Display for FrontError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrontError {}

// ------------------------------------------------------------------------------------------------
// The gateway process.

struct Gateway {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    async fn start(binary: &Path, dir: &Path, upstream: SocketAddr) -> anyhow::Result<Gateway> {
        let addr = free_port().await?;
        let admin = free_port().await?;
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "{addr}"
admin_listen = "{admin}"
shutdown_grace = "5s"

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"
timeout = "{}s"

[auth]
mode = "app_signature"
user_id = "1505084218764547200"
app_id = "demo-app"
app_secret = "demo-app-secret"
language = "en-US"

[cache]
ttl = "2s"
stale_while_revalidate = "2s"
stale_if_error = "30s"

[log]
format = "json"
"#,
                UPSTREAM_TIMEOUT.as_secs()
            ),
        )?;
        let log = dir.join("gateway.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("gateway exited at once")?;
        // For bench/soak.sh's cleanup, should this process die without stopping the gateway.
        std::fs::write(dir.join("gateway.pid"), pid.to_string())?;
        let mut gateway = Gateway {
            child,
            pid,
            addr,
            admin,
            log,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let url = format!("http://{}/readyz", self.admin);
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait()? {
                bail!("gateway exited: {status}; log: {}", self.log.display());
            }
            let request = Request::get(&url).body(Full::new(Bytes::new()))?;
            let ready = tokio::time::timeout(Duration::from_secs(1), client.request(request));
            if let Ok(Ok(response)) = ready.await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("gateway not ready after 15 s; log: {}", self.log.display())
    }

    /// SIGTERM, then how it exited and how long that took (SIGKILL after 15 s).
    async fn stop(&mut self) -> String {
        let asked = Instant::now();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            return format!("could not send SIGTERM: {term:?}");
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) => format!(
                "{status} {:.2} s after SIGTERM",
                asked.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                "still running 15 s after SIGTERM: killed".to_owned()
            }
        }
    }
}

async fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

/// Gateway log lines counted by level and message (JSON lines; anything else counted as is).
fn summarize_log(path: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let label = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                let level = v.get("level").and_then(|l| l.as_str()).unwrap_or("?");
                let message = v
                    .pointer("/fields/message")
                    .or_else(|| v.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("?");
                let message: String = message.chars().take(90).collect();
                format!("{level} {message}")
            }
            Err(_) => format!("raw {}", line.chars().take(90).collect::<String>()),
        };
        *out.entry(label).or_default() += 1;
    }
    out
}

fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ------------------------------------------------------------------------------------------------
// Output.

struct Summary<'a> {
    cli: &'a Cli,
    elapsed: Duration,
    stats: Stats,
    calls: u64,
    mock_requests: u64,
    faults: BTreeMap<&'static str, u64>,
    rss_start: Option<u64>,
    rss_end: Option<u64>,
    rss_peak: Option<u64>,
    exit: String,
    log: BTreeMap<String, u64>,
}

impl Summary<'_> {
    fn print(&self) {
        let s = &self.stats;
        let unanswered: u64 = s.unanswered.values().sum();
        let errors: u64 = s.errors.values().sum();
        let change = match (self.rss_start, self.rss_end) {
            (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) * 100.0 / a as f64),
            _ => None,
        };
        let row = |name: &str, value: String| println!("{name:<24} {value}");
        println!();
        println!("== soak summary");
        row(
            "run",
            format!(
                "{:.1} s, {} workers, fault rate {:.1}% of upstream calls, upstream.timeout {}s, cache.ttl 2s",
                self.elapsed.as_secs_f64(),
                self.cli.workers,
                self.cli.fault_rate * 100.0,
                UPSTREAM_TIMEOUT.as_secs()
            ),
        );
        row(
            "machine",
            format!(
                "{} cores, loadavg {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        row(
            "client requests",
            format!(
                "{} ({:.0}/s)",
                s.requests,
                s.requests as f64 / self.elapsed.as_secs_f64().max(0.001)
            ),
        );
        row("  by kind", join(&s.kinds));
        row("  status classes", join(&s.classes));
        row("errors (4xx/5xx)", format!("{errors}"));
        for (kind, n) in &s.errors {
            row("", format!("{kind}: {n}"));
        }
        for (kind, body) in &s.samples {
            row("  first body", format!("{kind}: {body}"));
        }
        row("unanswered", format!("{unanswered}"));
        for (why, n) in &s.unanswered {
            row("", format!("{why}: {n}"));
        }
        row("cache-status (list)", join(&s.cache));
        row(
            "upstream calls",
            format!(
                "{} = {:.3} per client request (mock answered {})",
                self.calls,
                self.calls as f64 / s.requests.max(1) as f64,
                self.mock_requests
            ),
        );
        row("  faults injected", join(&self.faults));
        row(
            "latency",
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms; {} answered after > {:.1} s",
                s.hist.quantile_ms(0.50),
                s.hist.quantile_ms(0.99),
                s.hist.quantile_ms(0.999),
                s.hist.max_us as f64 / 1000.0,
                s.slow,
                (UPSTREAM_TIMEOUT + Duration::from_millis(500)).as_secs_f64()
            ),
        );
        row(
            "gateway VmRSS",
            format!(
                "start {} (after {} s warm-up), end {}, change {}, peak VmHWM {}",
                kib(self.rss_start),
                self.cli.warmup_secs,
                kib(self.rss_end),
                change.map_or("?".to_owned(), |c| format!("{c:+.1}%")),
                kib(self.rss_peak)
            ),
        );
        row("gateway exit", self.exit.clone());
        row(
            "gateway log lines",
            format!("{}", self.log.values().sum::<u64>()),
        );
        let mut top: Vec<_> = self.log.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        for (line, n) in top.into_iter().take(8) {
            row("", format!("{n} x {line}"));
        }
        let flat = change.is_some_and(|c| c.abs() <= 10.0);
        row("RSS flat (within 10%)", yes(flat));
        row("every request answered", yes(unanswered == 0));
    }
}

fn join<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn yes(ok: bool) -> String {
    if ok { "yes" } else { "NO" }.to_owned()
}

fn kib(v: Option<u64>) -> String {
    v.map_or("?".to_owned(), |k| {
        format!("{:.1} MiB ({k} KiB)", k as f64 / 1024.0)
    })
}

fn secs(start: Instant, now: Instant) -> f64 {
    now.duration_since(start).as_secs_f64()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
