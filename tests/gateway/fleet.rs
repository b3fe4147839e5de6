//! Fleet mode against real `redis-server` processes: several gateways sharing one Redis in front
//! of the mock KooDrive, asserting on KooDrive calls counted by the mock, keys found in Redis and
//! pages served.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::redis::RedisServer;
use crate::support::{within, Mock, TestGateway};

mod collapsing;
mod demo;
mod generations;
mod integrity;
mod isolation;
mod logging;
mod purge;
mod read_your_writes;
mod redis_faults;
mod tls;

/// A fleet key file for this test (a fresh name each call).
pub(crate) fn key_file() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("kg-fleet-key-{}-{n}", std::process::id()));
    std::fs::write(&path, "a fleet key of thirty-two bytes!").unwrap();
    path
}

/// The `[fleet]` overlay for a gateway sharing `redis`; `extra` lines are added to the section,
/// and may end with a `[cache]` section of their own (else pages stay fresh for 60 s).
pub(crate) fn overlay(redis: &RedisServer, key: &std::path::Path, extra: &str) -> String {
    let cache = match extra.contains("[cache]") {
        true => "",
        false => "[cache]\nttl = \"60s\"\n",
    };
    format!(
        "{cache}[fleet]\nredis_url = \"{}\"\nkey_file = \"{}\"\n\
         timeout = \"200ms\"\nheartbeat = \"100ms\"\n{extra}",
        redis.url(),
        key.display()
    )
}

/// `n` gateways sharing `redis` in front of `mock`, each with fleet mode up.
pub(crate) async fn fleet_of(
    n: usize,
    mock: &Mock,
    redis: &RedisServer,
    extra: &str,
) -> Vec<TestGateway> {
    let key = key_file();
    let mut gateways = Vec::new();
    for _ in 0..n {
        let gw = TestGateway::for_mock(mock, &overlay(redis, &key, extra)).await;
        wait_fleet_up(&gw, true).await;
        gateways.push(gw);
    }
    gateways
}

/// Waits until the gateway's `fleet_up` gauge says `up`.
pub(crate) async fn wait_fleet_up(gw: &TestGateway, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    within("fleet_up to change", async {
        while gw.metrics().await.get("koodrive_gateway_fleet_up") != Some(&want) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until Redis holds `n` keys matching `pattern` (pages are stored in the background).
pub(crate) async fn wait_keys(redis: &RedisServer, pattern: &str, n: usize) -> Vec<String> {
    within("keys in Redis", async {
        loop {
            let keys = redis.keys(pattern);
            if keys.len() >= n {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A metric's value, 0 when absent.
pub(crate) async fn metric(gw: &TestGateway, name: &str) -> f64 {
    gw.metrics().await.get(name).copied().unwrap_or(0.0)
}

/// Waits until the sidecar has handled `n` invalidation hints of `kind` (`user`: a user's
/// generation moved; `all`: the fleet epoch, a purge) from the fleet's channel: a page read after
/// that is read as the write or purge left it. Between a write's answer and this, a sidecar may
/// still serve the page from before the write: that window is the visibility lag
/// `bench/fleet.sh` measures (under a millisecond on one host).
pub(crate) async fn wait_hints(gw: &TestGateway, kind: &str, n: f64) {
    let series = format!(r#"koodrive_gateway_fleet_invalidations_received_total{{kind="{kind}"}}"#);
    within("the sidecar to handle the invalidation hint", async {
        while metric(gw, &series).await < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
