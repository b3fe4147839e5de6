//! Concurrent misses for one page on different sidecars make one KooDrive call.

use std::time::Duration;

use crate::cache::{cache_status, version, versioned_mock};
use crate::fleet::{fleet_of, metric, wait_keys};
use crate::support::redis::RedisServer;
use crate::support::{within, Mock, Reply, TASK_LIST};

#[tokio::test]
async fn concurrent_misses_on_three_sidecars_make_one_koodrive_call() {
    let redis = RedisServer::start(None);
    // Slow enough that all three misses are in the air together.
    let mock = Mock::start(|_| Reply::ok().delay(Duration::from_secs(1))).await;
    let fleet = fleet_of(3, &mock, &redis, "").await;
    let path = format!("{TASK_LIST}?pageSize=7");
    let user = [("x-user-id", "grace")];
    let requests = fleet.iter().map(|gw| gw.client.get_with(&path, &user));
    let pages = within("three misses", futures_util::future::join_all(requests)).await;
    for page in &pages {
        assert_eq!(page.status, 200, "{}", page.text());
        assert_eq!(page.body, pages[0].body);
    }
    assert_eq!(mock.hits(), 1, "one KooDrive call for the whole fleet");
    let mut filled = 0.0;
    for gw in &fleet {
        filled += metric(
            gw,
            "koodrive_gateway_fleet_lock_waits_total{result=\"filled\"}",
        )
        .await;
    }
    // (A sidecar whose miss came in after the page was stored found it in Redis instead.)
    assert!(filled >= 1.0, "a sidecar waited for another's fetch");
    assert!(
        redis.keys("koodrive-gateway:lock:*").is_empty(),
        "the lock is released"
    );
    assert_eq!(redis.keys("koodrive-gateway:page:*").len(), 1);
}

/// Once per TTL for the fleet: a sidecar whose page went stale refreshes from the page another
/// sidecar has just fetched (in Redis) rather than from KooDrive.
#[tokio::test]
async fn a_stale_page_is_refreshed_from_another_sidecars_fetch() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(
        3,
        &mock,
        &redis,
        "[cache]\nttl = \"2s\"\nstale_while_revalidate = \"60s\"\n",
    )
    .await;
    // A 2 s TTL, refreshed while stale for up to 60 s.
    let user = [("x-user-id", "hot")];
    assert_eq!(
        version(&fleet[0].client.get_with(TASK_LIST, &user).await),
        1
    );
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    for gw in &fleet[1..] {
        assert_eq!(version(&gw.client.get_with(TASK_LIST, &user).await), 1);
    }
    // Every sidecar's copy goes stale together (their age counts from the one fetch).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let stale = fleet[0].client.get_with(TASK_LIST, &user).await;
    assert!(
        cache_status(&stale).contains("stale-while-revalidate"),
        "{}",
        cache_status(&stale)
    );
    mock.wait_for_hits(2).await;
    // B and C serve their stale copy once, and refresh from A's new page in Redis.
    for gw in &fleet[1..] {
        let refreshed = within("the refreshed page", async {
            loop {
                let now = version(&gw.client.get_with(TASK_LIST, &user).await);
                if now > 1 {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(refreshed, 2, "refreshed from KooDrive, not from A's page");
    }
    assert_eq!(mock.hits(), 2, "one KooDrive call per TTL for the fleet");
}
