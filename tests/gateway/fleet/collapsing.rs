//! Concurrent misses for one page on different sidecars make one KooDrive call.

use std::time::Duration;

use crate::fleet::{fleet_of, metric};
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
