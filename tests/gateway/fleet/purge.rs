//! The admin purge reaches every sidecar.

use bytes::Bytes;
use http_body_util::Full;

use crate::cache::{cache_status, version, versioned_mock};
use crate::fleet::{fleet_of, wait_hints};
use crate::support::redis::RedisServer;
use crate::support::{TestGateway, TASK_LIST};

async fn purge(gw: &TestGateway, query: &str) {
    let request = http::Request::post(gw.admin.url(&format!("/cache/purge{query}")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.admin.send(request).await.status, 200);
}

#[tokio::test]
async fn a_purge_through_one_sidecar_reaches_every_sidecar() {
    let redis = RedisServer::start(None);
    let mock = versioned_mock().await;
    let fleet = fleet_of(3, &mock, &redis, "").await;
    for (query, user) in [("", "ada"), ("?user_id=bob", "bob")] {
        let headers = [("x-user-id", user)];
        let mut seen = Vec::new();
        for gw in &fleet {
            let page = gw.client.get_with(TASK_LIST, &headers).await;
            assert!(!cache_status(&page).contains("fwd=miss") || seen.is_empty());
            seen.push(version(&page));
        }
        purge(&fleet[2], query).await;
        for gw in &fleet {
            // The purge's hint handled: a bumped epoch for everything, a user's generation
            // for one user.
            let kind = if query.is_empty() { "all" } else { "user" };
            wait_hints(gw, kind, 1.0).await;
            let page = gw.client.get_with(TASK_LIST, &headers).await;
            assert!(
                version(&page) > seen[0],
                "purge {query:?}: a sidecar still served the purged page ({})",
                cache_status(&page)
            );
        }
    }
}
