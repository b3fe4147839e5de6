//! The upstream budget's figures for `bench/quota.sh`, one sidecar in this process: a scripted
//! mock KooDrive on 127.0.0.1:0 that notes when each call arrives, and gateways on 127.0.0.1:0.
//!
//! 1. KooDrive calls per second against the budget, under `--workers` clients sending distinct
//!    misses for `--seconds`: each one-second window's calls, and the busiest window of any start.
//! 2. The extra latency of a delayed request: a miss sent when the bucket is spent, against one
//!    sent when a token is free (medians of `--samples`).
//! 3. Hit throughput with the budget on and off, in the same run, alternated: hits spend no
//!    budget, so the two should match.
//!
//! Every phase is bounded in time; nothing binds beyond loopback.

use std::time::{Duration, Instant};

use clap::Parser;
use koodrive_gateway::config::Config;
use koodrive_gateway::gateway::{self, Running};

// What this bench shares with the fleet budget's.
#[allow(dead_code)]
#[path = "quota/load.rs"]
mod load;
use load::{get, misses, recording_koodrive, report};

#[derive(Parser)]
struct Args {
    /// The budget: tokens a second.
    #[arg(long, default_value_t = 50)]
    rps: u32,
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// Clients sending misses in phase 1, and hits in phase 3.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Length of phase 1, and of each of phase 3's four rounds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Delayed and undelayed misses timed in phase 2.
    #[arg(long, default_value_t = 15)]
    samples: usize,
}

const PAGE: &str = "/koodrive/ose/v1/task/list?pageSize=10";

fn config(upstream: &str, budget: Option<(u32, u32)>) -> Result<Config, String> {
    let rate_limit = budget.map_or(String::new(), |(rps, burst)| {
        format!("[upstream.rate_limit]\nrps = {rps}\nburst = {burst}\nmax_wait = \"300ms\"\n")
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_in_flight = 100000\n\
         [upstream]\nurl = \"{upstream}\"\n{rate_limit}\
         [cache]\nttl = \"600s\"\n\
         [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"bench\"\n\
         [log]\nformat = \"json\"\nlevel = \"error\"\n"
    );
    Config::parse(&text, []).map_err(|e| e.to_string())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let (mock, arrivals) =
        recording_koodrive(r#"{"taskListDtos":[],"code":0,"msg":"Success."}"#).await;
    let url = mock.url();
    let start = |budget| {
        let url = url.clone();
        async move {
            gateway::run(config(&url, budget)?)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let on: Running = start(Some((args.rps, args.burst))).await?;
    let off: Running = start(None).await?;
    let client = load::client();

    // 1. Calls per second against the budget.
    println!(
        "budget: rps={} burst={} (max_wait 300ms)",
        args.rps, args.burst
    );
    let phase = Instant::now();
    let until = phase + Duration::from_secs(args.seconds);
    let clients = (0..args.workers as u64).map(|w| (on.addr, w * 1_000_000));
    let (ok, limited) = misses(&client, clients, until).await?;
    let per_second = format!(" (budget {} a second)", args.rps);
    let busiest = report(&arrivals, phase, args.seconds, &per_second)?;
    println!(
        "  busiest one-second window: {busiest} calls (bound rps + burst = {}); {ok} answered 200, {limited} got 429 GATEWAY_RATE_LIMITED",
        args.rps + args.burst
    );

    // 2. The extra latency of a delayed request.
    let mut free = Vec::new();
    let mut delayed = Vec::new();
    for sample in 0..args.samples {
        // A full bucket (it refills in burst/rps seconds), then one miss on a free token.
        tokio::time::sleep(Duration::from_secs_f64(
            f64::from(args.burst) / f64::from(args.rps) + 0.1,
        ))
        .await;
        let path = |k: usize| format!("/koodrive/ose/v1/task/{}", 900_000_000 + sample * 1000 + k);
        if let Some((200, took)) = get(&client, on.addr, &path(0)).await {
            free.push(took);
        }
        // Spend the rest of the bucket at once, then time one more miss: it waits for a token.
        let spend: Vec<_> = (1..args.burst as usize)
            .map(|k| {
                let (client, addr, path) = (client.clone(), on.addr, path(k));
                tokio::spawn(async move { get(&client, addr, &path).await })
            })
            .collect();
        for spent in spend {
            let _ = spent.await;
        }
        if let Some((200, took)) = get(&client, on.addr, &path(999)).await {
            delayed.push(took);
        }
    }
    let (free, delayed) = (median(free), median(delayed));
    println!(
        "delayed request: median {delayed:?} against {free:?} with a free token: {:?} extra (one token is {:?})",
        delayed.saturating_sub(free),
        Duration::from_secs_f64(1.0 / f64::from(args.rps))
    );

    // 3. Hit throughput, budget on and off, alternated.
    for running in [&on, &off] {
        get(&client, running.addr, PAGE).await;
    }
    let mut rates = [(0u64, Duration::ZERO); 2];
    for round in 0..4 {
        let which = round % 2;
        let addr = [off.addr, on.addr][which];
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let workers: Vec<_> = (0..args.workers)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut hits = 0u64;
                    while Instant::now() < until {
                        if let Some((200, _)) = get(&client, addr, PAGE).await {
                            hits += 1;
                        }
                    }
                    hits
                })
            })
            .collect();
        for worker in workers {
            rates[which].0 += worker.await.map_err(|e| e.to_string())?;
        }
        rates[which].1 += started.elapsed();
    }
    let per_second = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "hits/s: budget off {:.0}, budget on {:.0} ({} clients, 2 x {} s each, alternated)",
        per_second(rates[0]),
        per_second(rates[1]),
        args.workers,
        args.seconds
    );
    drop(mock);
    Ok(())
}
