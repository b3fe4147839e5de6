//! Fleet mode's figures for `bench/fleet.sh`: a scripted mock KooDrive, gateways and a real
//! `redis-server`, all on 127.0.0.1 in this process (the Redis a child process).
//!
//! 1. Invalidation visibility: from a write's answer on A to the first post-write page on B.
//! 2. KooDrive calls per page per TTL across three sidecars under a hot-key load.
//! 3. First-tier hit throughput with fleet mode on and off, alternated in the same run.
//! 4. A shared-tier hit's latency over a first-tier hit's (medians).
//! 5. Each Redis fault under a mixed load on two sidecars: client errors, worst latency, and how
//!    long fleet mode took to resume once Redis was healthy again (`faults.rs`).
//!
//! Every phase is bounded in count and time; nothing binds beyond loopback.

mod faults;
mod http;
mod redis_server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use koodrive_mock::{Mock, Reply};

use http::{
    client, ms, quantile, send, start, wait_up, Fleet, HttpClient, CREATE, LIST, OTHER_PAGE,
};
use redis_server::{secret_file, RedisServer};

#[derive(Parser)]
struct Args {
    /// Writes timed in phase 1, shared-tier hits in phase 4.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Concurrent clients in phases 2, 3 and 5.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Length of phase 2, and of each of phase 3's four rounds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The cache TTL of phase 2's hot pages, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    ttl_ms: u64,
    /// How long each fault of phase 5 lasts.
    #[arg(long, default_value_t = 3)]
    fault_seconds: u64,
}

/// A page that names its version (one more at every KooDrive call), so that a page fetched after
/// a write can be told from one fetched before.
fn versioned(counter: &AtomicU64) -> Reply {
    let version = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let body = format!(
        r#"{{"taskListDtos":[{{"taskId":"1486254586942472064","taskName":"v{version}"}}],"version":{version},"code":0,"msg":"Success."}}"#
    );
    Reply::json(200, body)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let counter = Arc::new(AtomicU64::new(0));
    let mock = {
        let counter = Arc::clone(&counter);
        Mock::start(move |_| versioned(&counter)).await
    };
    let mut redis = RedisServer::start("bench-redis-password").unwrap_or_else(|e| panic!("{e}"));
    let key_file = secret_file("key", "a fleet key of thirty-two bytes!");
    let password_file = secret_file("password", &redis.password);
    let fleet = Fleet {
        url: redis.url(),
        key_file: &key_file,
        password_file: &password_file,
    };
    let client = client();
    println!("redis-server on {} (no persistence)", redis.url());

    visibility(&args, &mock, &fleet, &client).await;
    hot_key(&args, &mock, &fleet, &client).await;
    hit_throughput(&args, &mock, &fleet, &client).await;
    shared_hit_latency(&args, &mock, &fleet, &client).await;
    faults::run(&args, &mock, &mut redis, &fleet, &client).await;
    let _ = std::fs::remove_file(key_file);
    let _ = std::fs::remove_file(password_file);
}

async fn visibility(args: &Args, mock: &Mock, fleet: &Fleet<'_>, client: &HttpClient) {
    let (a, b) = (
        start(&mock.url(), Some(fleet), "ttl = \"60s\"").await,
        start(&mock.url(), Some(fleet), "ttl = \"60s\"").await,
    );
    wait_up(client, &[&a, &b], Duration::from_secs(10)).await;
    let mut lags = Vec::new();
    let (mut stale_polls, mut lost) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..args.samples {
        if Instant::now() > deadline {
            break;
        }
        let user = format!("vis-{i}");
        let Some(before) = send(client, false, b.addr, LIST, &user).await else {
            continue;
        };
        // B holds the page now (a second request is a first-tier hit).
        send(client, false, b.addr, LIST, &user).await;
        let write = send(client, true, a.addr, CREATE, &user).await;
        let answered = Instant::now();
        if !write.is_some_and(|w| w.status == 200) {
            lost += 1;
            continue;
        }
        loop {
            let page = send(client, false, b.addr, LIST, &user).await;
            if page.as_ref().and_then(http::Answer::version) > before.version() {
                lags.push(answered.elapsed());
                break;
            }
            stale_polls += 1;
            if answered.elapsed() > Duration::from_secs(2) {
                lost += 1;
                break;
            }
        }
    }
    println!(
        "\n1. invalidation visibility, write answered on A -> first post-write page on B ({} writes):",
        lags.len()
    );
    println!(
        "   p50 {}  p99 {}  max {}  (pages from before the write served after it: {stale_polls}; writes not seen within 2 s: {lost})",
        ms(quantile(&mut lags, 0.5)),
        ms(quantile(&mut lags, 0.99)),
        ms(quantile(&mut lags, 1.0))
    );
    a.shutdown();
    b.shutdown();
}

async fn hot_key(args: &Args, mock: &Mock, fleet: &Fleet<'_>, client: &HttpClient) {
    let cache = format!(
        "ttl = \"{}ms\"\nstale_while_revalidate = \"10s\"",
        args.ttl_ms
    );
    let mut sidecars = Vec::new();
    for _ in 0..3 {
        sidecars.push(start(&mock.url(), Some(fleet), &cache).await);
    }
    wait_up(
        client,
        &sidecars.iter().collect::<Vec<_>>(),
        Duration::from_secs(10),
    )
    .await;
    let addrs: Vec<_> = sidecars.iter().map(|s| s.addr).collect();
    const PAGES: usize = 4;
    let before = mock.requests().len();
    let errors = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let window = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let (client, addrs) = (client.clone(), addrs.clone());
        let (errors, answered) = (Arc::clone(&errors), Arc::clone(&answered));
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while started.elapsed() < window {
                n += 1;
                let path = format!("{LIST}?pageSize={}", n % PAGES + 1);
                match send(&client, false, addrs[n % 3], &path, "hot").await {
                    Some(answer) if answer.status == 200 => {
                        answered.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let mut calls: HashMap<String, usize> = HashMap::new();
    for seen in &mock.requests()[before..] {
        *calls
            .entry(seen.uri.query().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let ttls = elapsed.as_secs_f64() / Duration::from_millis(args.ttl_ms).as_secs_f64();
    let per_page: Vec<String> = calls
        .values()
        .map(|n| format!("{:.2}", *n as f64 / ttls))
        .collect();
    println!(
        "\n2. hot keys: {} clients over 3 sidecars, {PAGES} pages, ttl {} ms, {:.1} s ({} answers, {} errors):",
        args.workers,
        args.ttl_ms,
        elapsed.as_secs_f64(),
        answered.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    println!(
        "   KooDrive calls per page per TTL: {} (goal 1; {} calls in all)",
        per_page.join(", "),
        calls.values().sum::<usize>()
    );
    for sidecar in &sidecars {
        sidecar.shutdown();
    }
}

/// Requests a second that `workers` clients get answered from one cached page in `window`.
async fn hit_rate(
    client: &HttpClient,
    addr: std::net::SocketAddr,
    workers: usize,
    window: Duration,
) -> f64 {
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, count) = (client.clone(), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < window {
                if send(&client, false, addr, LIST, "hits")
                    .await
                    .is_some_and(|a| a.status == 200)
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn hit_throughput(args: &Args, mock: &Mock, fleet: &Fleet<'_>, client: &HttpClient) {
    let on = start(&mock.url(), Some(fleet), "ttl = \"600s\"").await;
    let off = start(&mock.url(), None, "ttl = \"600s\"").await;
    wait_up(client, &[&on], Duration::from_secs(10)).await;
    for gateway in [&on, &off] {
        send(client, false, gateway.addr, LIST, "hits").await;
    }
    let window = Duration::from_secs(args.seconds);
    let (mut sum_on, mut sum_off) = (0.0, 0.0);
    for _ in 0..2 {
        sum_off += hit_rate(client, off.addr, args.workers, window).await;
        sum_on += hit_rate(client, on.addr, args.workers, window).await;
    }
    println!(
        "\n3. first-tier hits per second, {} clients, 2 x {} s each, alternated: fleet off {:.0}, on {:.0}: {:.3}x (goal >= 0.95x)",
        args.workers,
        args.seconds,
        sum_off / 2.0,
        sum_on / 2.0,
        sum_on / sum_off
    );
    on.shutdown();
    off.shutdown();
}

async fn shared_hit_latency(args: &Args, mock: &Mock, fleet: &Fleet<'_>, client: &HttpClient) {
    let a = start(&mock.url(), Some(fleet), "ttl = \"60s\"").await;
    let b = start(&mock.url(), Some(fleet), "ttl = \"60s\"").await;
    wait_up(client, &[&a, &b], Duration::from_secs(10)).await;
    // A page B holds, asked for just before each timed pair: the pair's first request then
    // finds the machine as warm as its second does, not just back from the pause below.
    send(client, false, b.addr, LIST, "warm").await;
    // Two cases: a user B has not seen (it reads the user's generation from Redis, then the
    // page: two round trips), and a user B already knows (the page alone: one round trip).
    for known in [false, true] {
        let (mut shared, mut first, mut extra) = (Vec::new(), Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..args.samples * 2 {
            if shared.len() >= args.samples || Instant::now() > deadline {
                break;
            }
            let user = format!("lat-{known}-{i}");
            if known {
                // Another page of the same user's, through B: B learns the generation.
                send(client, false, b.addr, OTHER_PAGE, &user).await;
            }
            send(client, false, a.addr, LIST, &user).await;
            // A stores its page in Redis in the background: give it a moment before B asks.
            tokio::time::sleep(Duration::from_millis(5)).await;
            send(client, false, b.addr, LIST, "warm").await;
            let Some(one) = send(client, false, b.addr, LIST, &user).await else {
                continue;
            };
            let Some(two) = send(client, false, b.addr, LIST, &user).await else {
                continue;
            };
            if one.cache.contains("detail=shared") && !two.cache.contains("detail=shared") {
                extra.push(one.took.saturating_sub(two.took));
                shared.push(one.took);
                first.push(two.took);
            }
        }
        let case = match known {
            false => "a user new to B (generation and page read from Redis)",
            true => "a user B knows (page read from Redis)",
        };
        println!(
            "\n4. latency of a shared-tier hit and a first-tier hit on B, {case}, {} pairs, medians: shared {}, first {}, extra p50 {} (goal <= 0.150 ms), p99 {}",
            shared.len(),
            ms(quantile(&mut shared, 0.5)),
            ms(quantile(&mut first, 0.5)),
            ms(quantile(&mut extra, 0.5)),
            ms(quantile(&mut extra, 0.99))
        );
    }
    a.shutdown();
    b.shutdown();
}
