//! Phase 5: each Redis fault under a mixed load (first-tier hits, misses, writes) on two
//! sidecars. Counted: answers other than 200 (or none within the bound) and the worst latency,
//! during the fault and the recovery; then how long both sidecars took to resume fleet mode once
//! Redis was healthy again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use koodrive_mock::Mock;

use crate::http::{ms, quantile, send, start, wait_up, Fleet, HttpClient, CREATE, LIST};
use crate::redis_server::RedisServer;
use crate::Args;

#[derive(Clone, Copy)]
enum Fault {
    Killed,
    Stopped,
    RestartedEmpty,
    WrongPassword,
    OutOfMemory,
    Slow,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Killed => "killed, then started again (empty)",
            Fault::Stopped => "SIGSTOP, then SIGCONT",
            Fault::RestartedEmpty => "restarted empty",
            Fault::WrongPassword => "wrong password (requirepass changed, connections closed)",
            Fault::OutOfMemory => "out of memory (writes refused)",
            Fault::Slow => "slow (DEBUG SLEEP 20 ms back to back)",
        }
    }
}

#[derive(Default)]
struct Tally {
    answers: usize,
    errors: usize,
    latencies: Vec<Duration>,
}

pub async fn run(
    args: &Args,
    mock: &Mock,
    redis: &mut RedisServer,
    fleet: &Fleet<'_>,
    client: &HttpClient,
) {
    println!(
        "\n5. Redis faults, {} clients on 2 sidecars (hits, misses, one write in ten); each fault lasts {} s, then 2 s of recovery:",
        args.workers, args.fault_seconds
    );
    for fault in [
        Fault::Killed,
        Fault::Stopped,
        Fault::RestartedEmpty,
        Fault::WrongPassword,
        Fault::OutOfMemory,
        Fault::Slow,
    ] {
        let cache = "ttl = \"2s\"\nstale_while_revalidate = \"2s\"";
        let a = start(&mock.url(), Some(fleet), cache).await;
        let b = start(&mock.url(), Some(fleet), cache).await;
        wait_up(client, &[&a, &b], Duration::from_secs(10)).await;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..args.workers {
            let (client, tally, stop) = (client.clone(), Arc::clone(&tally), Arc::clone(&stop));
            let addrs = [a.addr, b.addr];
            tasks.push(tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let user = format!("fault-{}", n % 8);
                    let answer = match n % 10 {
                        0 => send(&client, true, addrs[n % 2], CREATE, &user).await,
                        _ => {
                            let path = format!("{LIST}?pageSize={}", n % 20 + 1);
                            send(&client, false, addrs[n % 2], &path, &user).await
                        }
                    };
                    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                    tally.answers += 1;
                    match answer {
                        Some(answer) if answer.status == 200 => tally.latencies.push(answer.took),
                        Some(answer) => {
                            tally.errors += 1;
                            tally.latencies.push(answer.took);
                        }
                        None => tally.errors += 1,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = Duration::from_secs(args.fault_seconds);
        let mut conn = redis.control().ok();
        let busy_stop = Arc::new(AtomicBool::new(false));
        let mut busy = None;
        match fault {
            Fault::Killed => redis.kill(),
            Fault::Stopped => redis.signal("-STOP"),
            Fault::RestartedEmpty => {
                let _ = redis.restart_empty();
            }
            Fault::WrongPassword => {
                if let Some(conn) = conn.as_mut() {
                    let _ = redis.change_password(conn, "not-the-gateways-password");
                }
            }
            Fault::OutOfMemory => {
                if let Some(conn) = conn.as_mut() {
                    let _ = RedisServer::out_of_memory(conn, true);
                }
            }
            Fault::Slow => {
                busy = Some(redis.busy(Duration::from_millis(20), Arc::clone(&busy_stop)));
            }
        }
        tokio::time::sleep(during).await;
        match fault {
            Fault::Killed => {
                let _ = redis.restart_empty();
            }
            Fault::Stopped => redis.signal("-CONT"),
            Fault::RestartedEmpty => {}
            Fault::WrongPassword => {
                if let Some(conn) = conn.as_mut() {
                    let password = redis.password.clone();
                    let _ = redis::cmd("CONFIG")
                        .arg(&["SET", "requirepass", &password])
                        .query::<()>(conn);
                }
            }
            Fault::OutOfMemory => {
                if let Some(conn) = conn.as_mut() {
                    let _ = RedisServer::out_of_memory(conn, false);
                }
            }
            Fault::Slow => {
                busy_stop.store(true, Ordering::Relaxed);
                if let Some(busy) = busy.take() {
                    let _ = tokio::task::spawn_blocking(move || busy.join()).await;
                }
            }
        }
        let healed = Instant::now();
        let resumed = wait_up(client, &[&a, &b], Duration::from_secs(15)).await;
        let resumed_after = resumed.map_or("not within 15 s".to_owned(), |_| ms(healed.elapsed()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
        let answers = tally.answers;
        let errors = tally.errors;
        println!(
            "   {:<58} {answers:>6} requests, {errors} errors, p99 {}, worst {}; fleet mode back {resumed_after} after Redis was healthy",
            fault.name(),
            ms(quantile(&mut tally.latencies, 0.99)),
            ms(quantile(&mut tally.latencies, 1.0)),
        );
        a.shutdown();
        b.shutdown();
    }
}
