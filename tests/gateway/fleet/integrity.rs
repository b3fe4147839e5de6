//! A page altered in Redis (by any client without the fleet key) is never served.

use crate::cache::{cache_status, version, versioned_mock};
use crate::fleet::{fleet_of, metric, wait_keys};
use crate::support::redis::RedisServer;
use crate::support::TASK_LIST;

#[tokio::test]
async fn a_page_tampered_with_in_redis_is_never_served() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let user = [("x-user-id", "eve")];
    let first = fleet[0].client.get_with(TASK_LIST, &user).await;
    assert_eq!(first.status, 200);
    let keys = wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    assert_eq!(keys.len(), 1);
    let stored = redis.get(&keys[0]).unwrap();
    // Another Redis client rewrites the body, keeping the tag in front.
    let needle = b"\"version\":1";
    let at = stored
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the stored page holds its version");
    let mut altered = stored.clone();
    altered[at + needle.len() - 1] = b'9';
    redis.set_bytes(&keys[0], &altered);
    let page = fleet[1].client.get_with(TASK_LIST, &user).await;
    assert_eq!(page.status, 200);
    assert_ne!(version(&page), 9, "the altered page was served");
    assert!(
        cache_status(&page).contains("fwd=miss"),
        "{}",
        cache_status(&page)
    );
    assert_eq!(
        metric(
            &fleet[1],
            "koodrive_gateway_fleet_lookups_total{result=\"tampered\"}"
        )
        .await,
        1.0
    );
    assert_eq!(mock.hits(), 2);
}
