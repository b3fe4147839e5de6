//! Redis failing never fails a request: killed, paused (SIGSTOP then SIGCONT), slow, reset, restarted empty
//! or asking for another password, every client request is answered as a single sidecar would
//! answer it, and fleet mode resumes by itself when Redis is back.

use std::time::{Duration, Instant};

use crate::cache::{create, version, versioned_mock};
use crate::fleet::{fleet_of, key_file, metric, overlay, wait_fleet_up};
use crate::support::redis::RedisServer;
use crate::support::{Mock, TestGateway, TASK_LIST};

/// upstream.timeout (5s in the test config) + fleet.timeout + a margin for a loaded machine.
const BOUND: Duration = Duration::from_secs(8);

/// Lists through every gateway: each answered 200, within the bound.
async fn all_answered(fleet: &[TestGateway], user: &str) -> Vec<u64> {
    let mut versions = Vec::new();
    for gw in fleet {
        let started = Instant::now();
        let page = gw.client.get_with(TASK_LIST, &[("x-user-id", user)]).await;
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(
            started.elapsed() < BOUND,
            "answered in {:?}",
            started.elapsed()
        );
        versions.push(version(&page));
    }
    versions
}

#[tokio::test]
async fn redis_killed_then_back_every_request_is_answered_and_fleet_mode_resumes() {
    let mut redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    all_answered(&fleet, "ada").await;
    redis.kill();
    for _ in 0..3 {
        all_answered(&fleet, "ada").await;
    }
    wait_fleet_up(&fleet[0], false).await;
    assert_eq!(
        metric(&fleet[0], "koodrive_gateway_fleet_breaker_open").await,
        1.0
    );
    assert!(metric(&fleet[0], "koodrive_gateway_fleet_fallbacks_total").await >= 1.0);
    // A write while Redis is away still invalidates the writer's own sidecar.
    let before = all_answered(&fleet, "ada").await;
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    assert!(all_answered(&fleet[..1], "ada").await[0] > before[0]);
    redis.restart_empty();
    let back = Instant::now();
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
        assert_eq!(metric(gw, "koodrive_gateway_fleet_breaker_open").await, 0.0);
    }
    // "Within a second or two" (2 s at most between tries), with a margin for a loaded machine.
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "resumed after {:?}",
        back.elapsed()
    );
    // The write made while Redis was away reached the fleet on resume: no sidecar serves the
    // list from before it.
    let after = all_answered(&fleet, "ada").await;
    assert!(
        after.iter().all(|v| *v > before[0]),
        "{after:?} after {before:?}"
    );
}

#[tokio::test]
async fn redis_paused_then_resumed_every_request_is_answered() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let before = all_answered(&fleet, "ada").await;
    redis.stop();
    for user in ["ada", "bob", "cy"] {
        all_answered(&fleet, user).await;
    }
    for gw in &fleet {
        wait_fleet_up(gw, false).await;
    }
    // A write while Redis hangs: answered, and its fleet-wide bump made on resume.
    let write = fleet[0].client.send(create(&fleet[0], "ada")).await;
    assert_eq!(write.status, 200);
    redis.resume();
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
    all_answered(&fleet, "dee").await;
    // Redis kept the page from before the write; the bump made on resume keeps it unreachable.
    let after = all_answered(&fleet, "ada").await;
    assert!(
        after.iter().all(|v| *v > before[0]),
        "{after:?} after {before:?}"
    );
}

/// Generations never go backwards: after Redis restarts empty, a page from before a write is
/// not served.
#[tokio::test]
async fn redis_restarted_empty_serves_no_page_from_before_a_write() {
    let mut redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let before = all_answered(&fleet, "ada").await;
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    let written = all_answered(&fleet, "ada").await;
    assert!(written.iter().all(|v| *v > before[0]));
    redis.restart_empty();
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
    let after = all_answered(&fleet, "ada").await;
    assert!(
        after.iter().all(|v| *v > before[0]),
        "a page from before the write came back: {after:?}"
    );
}

#[tokio::test]
async fn a_wrong_redis_password_falls_back_and_a_fixed_one_resumes() {
    let redis = RedisServer::start(Some("right-password"));
    let mock = Mock::ok().await;
    let password = std::env::temp_dir().join(format!("kg-redis-pw-{}", std::process::id()));
    std::fs::write(&password, "wrong-password").unwrap();
    let key = key_file();
    let extra = format!("redis_password_file = \"{}\"\n", password.display());
    let gw = TestGateway::for_mock(&mock, &overlay(&redis, &key, &extra)).await;
    for _ in 0..3 {
        let page = gw.client.get_with(TASK_LIST, &[("x-user-id", "ada")]).await;
        assert_eq!(page.status, 200);
    }
    assert_eq!(
        gw.metrics().await.get("koodrive_gateway_fleet_up"),
        Some(&0.0)
    );
    // The file is read again at the next connect.
    std::fs::write(&password, "right-password").unwrap();
    wait_fleet_up(&gw, true).await;
    let _ = std::fs::remove_file(&password);
}

/// Redis out of memory (every write refused): requests are answered as by a single sidecar,
/// and fleet mode is back once Redis has room again.
#[tokio::test]
async fn redis_out_of_memory_every_request_is_answered() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    all_answered(&fleet, "ada").await;
    redis.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]);
    for user in ["bob", "cy", "dee", "eve"] {
        all_answered(&fleet, user).await;
        assert_eq!(
            fleet[0].client.send(create(&fleet[0], user)).await.status,
            200
        );
        let written = all_answered(&fleet[..1], user).await;
        assert!(written[0] > 0);
    }
    redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
    all_answered(&fleet, "fay").await;
}

/// Redis slow (every command held by `CLIENT PAUSE ... ALL` far beyond `fleet.timeout`):
/// requests are answered without waiting for Redis, and fleet mode is back once it answers.
#[tokio::test]
async fn redis_slow_every_request_is_answered_without_waiting_for_it() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    all_answered(&fleet, "ada").await;
    // Held for 12 s; every new command waits for it to end, ours too (no UNPAUSE).
    redis.command(&["CLIENT", "PAUSE", "12000", "ALL"]);
    let started = Instant::now();
    for user in ["ada", "bob", "cy", "dee"] {
        all_answered(&fleet, user).await;
    }
    // Eight requests, each at most a few Redis timeouts (200 ms here) late: far less than the
    // pause, so none of them waited for Redis to answer.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "answered in {:?} while Redis was paused",
        started.elapsed()
    );
    for gw in &fleet {
        wait_fleet_up(gw, false).await;
    }
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
    all_answered(&fleet, "eve").await;
}

/// Every connection to Redis reset (`CLIENT KILL`, the subscriber's too): requests are still
/// answered, and a write through one sidecar is still seen through the other once it is back.
#[tokio::test]
async fn redis_connections_reset_every_request_is_answered_and_writes_still_seen() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let before = all_answered(&fleet, "ada").await;
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    for user in ["ada", "bob"] {
        all_answered(&fleet, user).await;
    }
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    // Seen through the other sidecar: at once when its connections were already back, else
    // as soon as they are (within the wait's bound).
    crate::support::within("the write seen through the other sidecar", async {
        loop {
            let versions = all_answered(&fleet, "ada").await;
            if versions.iter().all(|v| *v > before[0]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
}
