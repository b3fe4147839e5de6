//! The fleet budget's figures for `bench/quota.sh`: a real `redis-server` on a free loopback
//! port, a mock KooDrive that notes when each call arrives, and three gateways sharing the Redis
//! and one budget, all in this process (but Redis) and on 127.0.0.1 only.
//!
//! 1. KooDrive calls per second against the fleet budget, under `--workers` clients on each
//!    sidecar sending distinct misses for `--seconds`, and the busiest window of any start.
//! 2. The same with Redis killed: each sidecar on its local share (the budget over three).
//!
//! Every phase is bounded in time; nothing binds beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use koodrive_gateway::config::Config;
use koodrive_gateway::gateway::{self, Running};
use koodrive_mock::{Mock, Reply};

// The fleet bench's redis-server (this bench uses part of it).
#[allow(dead_code)]
#[path = "fleet/redis_server.rs"]
mod redis_server;
use redis_server::{secret_file, RedisServer};

#[derive(Parser)]
struct Args {
    /// The fleet's budget: tokens a second.
    #[arg(long, default_value_t = 50)]
    rps: u32,
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// Clients sending misses, on each sidecar.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Length of each phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// No request waits longer than this: the bench never hangs.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
const SIDECARS: usize = 3;

/// The files the gateways read: the fleet key and the Redis password.
struct Secrets {
    key: PathBuf,
    password: PathBuf,
}

fn config(upstream: &str, redis: &str, secrets: &Secrets, args: &Args) -> Result<Config, String> {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_in_flight = 100000\n\
         [upstream]\nurl = \"{upstream}\"\n\
         [upstream.rate_limit]\nrps = {}\nburst = {}\nmax_wait = \"300ms\"\n\
         [cache]\nttl = \"600s\"\n\
         [fleet]\nredis_url = \"{redis}\"\nkey_file = \"{}\"\n\
         redis_password_file = \"{}\"\n\
         timeout = \"100ms\"\nheartbeat = \"100ms\"\n\
         [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"bench\"\n\
         [log]\nformat = \"json\"\nlevel = \"error\"\n",
        args.rps,
        args.burst,
        secrets.key.display(),
        secrets.password.display()
    );
    Config::parse(&text, []).map_err(|e| e.to_string())
}

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Option<u16> {
    let uri = format!("http://{addr}{path}").parse().ok()?;
    let exchange = async {
        let response = client.get(uri).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    };
    tokio::time::timeout(REQUEST_LIMIT, exchange).await.ok()?
}

/// Distinct misses from `--workers` clients on each sidecar for `--seconds`; prints the calls
/// KooDrive saw in each second and the busiest window.
async fn phase(
    name: &str,
    gateways: &[Running],
    client: &HttpClient,
    arrivals: &Mutex<Vec<Instant>>,
    args: &Args,
    first_id: u64,
) -> Result<(), String> {
    arrivals.lock().map_err(|e| e.to_string())?.clear();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for (s, running) in gateways.iter().enumerate() {
        for w in 0..args.workers {
            let (client, addr) = (client.clone(), running.addr);
            let base = first_id + (s * args.workers + w) as u64 * 1_000_000;
            workers.push(tokio::spawn(async move {
                let (mut ok, mut limited, mut n) = (0u64, 0u64, 0u64);
                while Instant::now() < until {
                    n += 1;
                    match get(
                        &client,
                        addr,
                        &format!("/koodrive/ose/v1/task/{}", base + n),
                    )
                    .await
                    {
                        Some(200) => ok += 1,
                        Some(429) => limited += 1,
                        _ => {}
                    }
                }
                (ok, limited)
            }));
        }
    }
    let (mut ok, mut limited) = (0, 0);
    for worker in workers {
        let (o, l) = worker.await.map_err(|e| e.to_string())?;
        ok += o;
        limited += l;
    }
    let calls = arrivals.lock().map_err(|e| e.to_string())?.clone();
    println!("{name}:");
    for second in 0..args.seconds {
        let from = started + Duration::from_secs(second);
        let to = from + Duration::from_secs(1);
        let n = calls.iter().filter(|t| **t >= from && **t < to).count();
        println!("  second {second}: {n} KooDrive calls");
    }
    let busiest = (0..calls.len())
        .map(|i| {
            let end = calls[i] + Duration::from_secs(1);
            calls[i..].iter().take_while(|t| **t < end).count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "  busiest one-second window: {busiest} calls (fleet bound rps + burst = {}); {ok} answered 200, {limited} got 429",
        args.rps + args.burst
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut redis = RedisServer::start("bench-password")?;
    let secrets = Secrets {
        key: secret_file("quota-key", "a fleet key of thirty-two bytes!"),
        password: secret_file("quota-password", &redis.password),
    };
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = Arc::clone(&arrivals);
    let mock = Mock::start(move |_| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(Instant::now());
        }
        Reply::json(200, r#"{"code":0,"msg":"Success."}"#)
    })
    .await;
    let mut gateways = Vec::new();
    for _ in 0..SIDECARS {
        let config = config(&mock.url(), &redis.url(), &secrets, &args)?;
        gateways.push(gateway::run(config).await.map_err(|e| e.to_string())?);
    }
    // Every sidecar up and registered (a few heartbeats).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    println!(
        "fleet budget: rps={} burst={} (max_wait 300ms), {SIDECARS} sidecars x {} clients",
        args.rps, args.burst, args.workers
    );
    phase(
        "shared bucket in Redis",
        &gateways,
        &client,
        &arrivals,
        &args,
        0,
    )
    .await?;
    redis.kill();
    // Each sidecar notices at its next Redis call or heartbeat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    phase(
        "Redis killed: each sidecar on its local share",
        &gateways,
        &client,
        &arrivals,
        &args,
        1 << 40,
    )
    .await?;
    let _ = std::fs::remove_file(&secrets.key);
    let _ = std::fs::remove_file(&secrets.password);
    drop(mock);
    Ok(())
}
