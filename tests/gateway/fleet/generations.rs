//! Generations never go backwards: a counter Redis lost (flushed, without any connection
//! dropping) comes back above every number the sidecars learned, so a write after the flush
//! still invalidates everywhere; a server that went back in time (a failover) is moved past
//! every number it had.

use crate::cache::{cache_status, create, version, versioned_mock};
use crate::fleet::{fleet_of, metric, wait_fleet_up, wait_hints, wait_keys};
use crate::support::redis::{RedisServer, Resp};
use crate::support::TASK_LIST;

#[tokio::test]
async fn a_write_after_redis_is_flushed_still_invalidates_every_sidecar() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let user = [("x-user-id", "ada")];
    // One write first: the counter has moved past its seed.
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    let first = fleet[0].client.get_with(TASK_LIST, &user).await;
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    let shared = fleet[1].client.get_with(TASK_LIST, &user).await;
    assert_eq!(version(&shared), version(&first));
    // Both sidecars hold the page in their first tier, under the generation they learned.
    redis.command(&["FLUSHALL"]);
    let write = fleet[1].client.send(create(&fleet[1], "ada")).await;
    assert_eq!(write.status, 200);
    for gw in &fleet {
        // Both writes' hints handled (the lag between is bench/fleet.sh's to measure).
        wait_hints(gw, "user", 2.0).await;
        let page = gw.client.get_with(TASK_LIST, &user).await;
        assert!(
            version(&page) > version(&first),
            "the page from before the write was served after the flush: {}",
            cache_status(&page)
        );
    }
}

/// A failover to a replica that missed the last write: the counters go back, and the replica
/// holds pages from before the write. The sidecars see another server (its `run_id`) and move
/// the fleet epoch past every number: no page from before the write is served.
#[tokio::test]
async fn a_failover_to_a_server_that_missed_a_write_serves_no_page_from_before_it() {
    let mut redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let user = [("x-user-id", "ada")];
    let first = fleet[0].client.get_with(TASK_LIST, &user).await;
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    // What the replica holds: the counters and the page from before the write.
    assert_eq!(redis.command(&["SAVE"]), Resp::Ok("OK".into()));
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    redis.restart_from_snapshot();
    assert_eq!(
        wait_keys(&redis, "koodrive-gateway:page:*", 1).await.len(),
        1
    );
    for gw in &fleet {
        wait_fleet_up(gw, true).await;
    }
    for gw in &fleet {
        let page = gw.client.get_with(TASK_LIST, &user).await;
        assert!(
            version(&page) > version(&first),
            "a page from before the write came back after the failover: {}",
            cache_status(&page)
        );
    }
}

/// A sidecar whose read of a user's fleet generation fails (here: the counter made the wrong
/// type, so the read script errs while the rest of Redis works, and fleet mode stays up) keys
/// that user's pages by its own local counter. Such a page is this sidecar's alone: another
/// sidecar in the same state, whose local counter knows nothing of the first one's writes, never
/// gets it from the shared tier.
#[tokio::test]
async fn a_page_keyed_by_one_sidecars_own_generation_is_never_anothers_hit() {
    use sha2::{Digest, Sha256};
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let tag = hex::encode(&Sha256::digest(b"ada")[..16]);
    let counter = format!("koodrive-gateway:{{u:{tag}}}:gen");
    assert_eq!(
        redis.command(&["HSET", &counter, "not", "a counter"]),
        Resp::Int(1)
    );
    let user = [("x-user-id", "ada")];
    let own = fleet[0].client.get_with(TASK_LIST, &user).await;
    assert_eq!(own.status, 200);
    // Its page reaches Redis all the same (stored in the background).
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    let other = fleet[1].client.get_with(TASK_LIST, &user).await;
    assert_eq!(other.status, 200);
    assert!(
        !cache_status(&other).contains("detail=shared"),
        "another sidecar's locally keyed page was served: {}",
        cache_status(&other)
    );
    assert_eq!(mock.hits(), 2, "each sidecar fetched its own page");
    for gw in &fleet {
        assert_eq!(
            metric(gw, "koodrive_gateway_fleet_up").await,
            1.0,
            "one failed read is not a fallback"
        );
    }
}
