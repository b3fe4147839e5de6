//! The fleet budget's figures for `bench/quota.sh`: a real `redis-server` on a free loopback
//! port, a mock KooDrive that notes when each call arrives, and three gateways sharing the Redis
//! and one budget, all in this process (but Redis) and on 127.0.0.1 only.
//!
//! 1. KooDrive calls per second against the fleet budget, under `--workers` clients on each
//!    sidecar sending distinct misses for `--seconds`, and the busiest window of any start.
//! 2. The same with Redis killed: each sidecar on its local share (the budget over three).
//!
//! Every phase is bounded in time; nothing binds beyond loopback.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use koodrive_gateway::config::Config;
use koodrive_gateway::gateway::{self, Running};

// What this bench shares with the single sidecar's.
#[allow(dead_code)]
#[path = "quota/load.rs"]
mod load;
use load::{misses, recording_koodrive, report, Arrivals, HttpClient};

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

/// Distinct misses from `--workers` clients on each sidecar for `--seconds`; prints the calls
/// KooDrive saw in each second and the busiest window.
async fn phase(
    name: &str,
    gateways: &[Running],
    client: &HttpClient,
    arrivals: &Arrivals,
    args: &Args,
    first_id: u64,
) -> Result<(), String> {
    arrivals.lock().map_err(|e| e.to_string())?.clear();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let clients = gateways.iter().enumerate().flat_map(|(s, running)| {
        (0..args.workers).map(move |w| {
            let base = first_id + (s * args.workers + w) as u64 * 1_000_000;
            (running.addr, base)
        })
    });
    let (ok, limited) = misses(client, clients, until).await?;
    println!("{name}:");
    let busiest = report(arrivals, started, args.seconds, "")?;
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
    let (mock, arrivals) = recording_koodrive(r#"{"code":0,"msg":"Success."}"#).await;
    let mut gateways = Vec::new();
    for _ in 0..SIDECARS {
        let config = config(&mock.url(), &redis.url(), &secrets, &args)?;
        gateways.push(gateway::run(config).await.map_err(|e| e.to_string())?);
    }
    // Every sidecar up and registered (a few heartbeats).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = load::client();
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
