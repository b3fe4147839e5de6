//! KooDrive throttling one sidecar makes the whole fleet back off: the cooldown is a key in
//! Redis (and a Pub/Sub hint), so every sidecar serves its stale pages and refuses the rest with
//! the time left, and nothing reaches KooDrive until it is over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::TASK;
use crate::fleet::{fleet_of, metric, wait_keys};
use crate::quota::assert_rate_limited;
use crate::support::redis::RedisServer;
use crate::support::{within, Mock, Reply, TASK_LIST};

const CACHE: &str =
    "[cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"60s\"\n";

#[tokio::test]
async fn a_429_with_retry_after_on_one_sidecar_makes_all_three_back_off() {
    let redis = RedisServer::start(None);
    let throttling = Arc::new(AtomicBool::new(false));
    let on = Arc::clone(&throttling);
    let mock = Mock::start(move |seen| {
        match on.load(Ordering::SeqCst) && seen.uri.path().ends_with("/9") {
            true => Reply::json(429, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#)
                .header("retry-after", "3"),
            false => Reply::ok(),
        }
    })
    .await;
    let fleet = fleet_of(3, &mock, &redis, CACHE).await;
    // Each sidecar holds a page of its own user, soon stale.
    let users = ["u0", "u1", "u2"];
    for (gw, user) in fleet.iter().zip(users) {
        let page = gw.client.get_with(TASK_LIST, &[("x-user-id", user)]).await;
        assert_eq!(page.status, 200, "{}", page.text());
    }
    throttling.store(true, Ordering::SeqCst);
    let throttled = fleet[0].client.get(&format!("{TASK}9")).await;
    let started = Instant::now();
    assert_eq!(throttled.status, 429);
    let hits = mock.hits();
    // The cooldown is in Redis for the others to find.
    wait_keys(&redis, "koodrive-gateway:{budget}:cooldown", 1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    for (n, (gw, user)) in fleet.iter().zip(users).enumerate() {
        let stale = gw.client.get_with(TASK_LIST, &[("x-user-id", user)]).await;
        assert_eq!(stale.status, 200, "sidecar {n}: {}", stale.text());
        let status = stale.header("cache-status");
        assert!(
            status.contains("detail=rate-limited"),
            "sidecar {n}: {status}"
        );
        let refused = gw.client.get(&format!("{TASK}{}", 10 + n)).await;
        assert_rate_limited(&refused);
        let left: u64 = refused.header("retry-after").parse().unwrap();
        assert!((1..=3).contains(&left), "sidecar {n}: Retry-After {left}");
        assert_eq!(
            metric(gw, "koodrive_gateway_budget_cooldown_active").await,
            1.0,
            "sidecar {n}"
        );
    }
    assert_eq!(
        mock.hits(),
        hits,
        "nothing reached KooDrive during the cooldown"
    );
    // Over for every sidecar once Retry-After has passed (polled, bounded).
    for gw in &fleet[1..] {
        within("the cooldown ends", async {
            while gw.client.get(&format!("{TASK}20")).await.status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}
