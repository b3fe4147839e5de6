//! A task write through one sidecar is seen by every sidecar's next list.

use crate::cache::{cache_status, create, version, versioned_mock};
use crate::fleet::{fleet_of, wait_keys};
use crate::support::redis::RedisServer;
use crate::support::TASK_LIST;

#[tokio::test]
async fn a_write_through_a_is_seen_through_b_and_c() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(3, &mock, &redis, "").await;
    let user = [("x-user-id", "ada")];
    let first = fleet[0].client.get_with(TASK_LIST, &user).await;
    assert_eq!(first.status, 200);
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    // B and C find A's page in the shared tier: no second KooDrive call.
    for gw in &fleet[1..] {
        let page = gw.client.get_with(TASK_LIST, &user).await;
        assert_eq!(version(&page), version(&first));
        assert!(
            cache_status(&page).contains("detail=shared"),
            "{}",
            cache_status(&page)
        );
    }
    assert_eq!(mock.hits(), 1);
    // The write's answer comes back after the fleet-wide bump: B and C then miss the old page.
    let write = fleet[0].client.send(create(&fleet[0], "ada")).await;
    assert_eq!(write.status, 200);
    let before = version(&first);
    for gw in &fleet[1..] {
        let page = gw.client.get_with(TASK_LIST, &user).await;
        assert!(
            version(&page) > before,
            "a sidecar served the list from before the write: {}",
            cache_status(&page)
        );
    }
    assert!(
        !redis.keys("koodrive-gateway:{u:*}:gen").is_empty(),
        "the user's generation lives in Redis"
    );
}
