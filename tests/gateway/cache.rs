//! The task-list cache, counted at the mock: hits, keys, what is stored, collapsing, stale pages
//! and client directives. Identities are in `cache_sharing.rs`, writes and purges in
//! `invalidation.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use tokio::sync::Notify;

use crate::support::{within, Mock, Recorded, Reply, TestGateway, TestResponse, TASK_LIST};

mod collapsing;
mod freshness;

/// A task-list page in KooDrive's wire shape that says whom it was made for and which version.
pub(crate) fn page_for(seen: &Recorded, version: u64) -> Reply {
    let user = seen.header("x-user-id").unwrap_or("?");
    let auth = seen.header("authorization").unwrap_or("?");
    let credential = if auth.starts_with("HMAC-SHA256") {
        "app"
    } else {
        auth
    };
    let language = seen.header("language").unwrap_or("?");
    let body = serde_json::json!({
        "taskListDtos": [{ "taskId": "1486254586942472064", "userId": user, "taskName": format!("v{version}") }],
        "owner": format!("{user}|{credential}|{language}"),
        "version": version,
        "code": 0,
        "msg": "Success.",
    });
    Reply::json(200, body.to_string())
}

/// A mock whose pages carry an ever-increasing version, so a test can tell refreshes apart.
pub(crate) async fn versioned_mock() -> Mock {
    let counter = AtomicU64::new(0);
    Mock::start(move |seen| page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1)).await
}

pub(crate) fn cache_status(response: &TestResponse) -> &str {
    response.header("cache-status")
}

pub(crate) fn version(response: &TestResponse) -> u64 {
    response.json()["version"].as_u64().unwrap()
}

#[tokio::test]
async fn a_hit_skips_the_upstream() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let first = gw.client.get(TASK_LIST).await;
    assert_eq!(cache_status(&first), "koodrive-gateway; fwd=miss; stored");
    let second = gw.client.get(TASK_LIST).await;
    assert_eq!(mock.hits(), 1);
    assert_eq!(second.body, first.body);
    assert!(
        cache_status(&second).starts_with("koodrive-gateway; hit; ttl="),
        "{}",
        cache_status(&second)
    );
    let ttl: i64 = cache_status(&second)
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&ttl), "{ttl}");
    assert!(second.header("age").parse::<u64>().unwrap() < 10);
    assert_eq!(second.header("content-type"), "application/json");
}

#[tokio::test]
async fn equivalent_queries_share_one_entry_and_are_forwarded_as_written() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let first = "status=2&status=1";
    gw.client.get(&format!("{TASK_LIST}?{first}")).await;
    assert_eq!(mock.last().uri.query(), Some(first));
    for same in [
        "status=1,2",
        "status=1&status=2&pageSize=100",
        "pageCursor=&status=2,1",
    ] {
        let response = gw.client.get(&format!("{TASK_LIST}?{same}")).await;
        assert!(cache_status(&response).contains("hit"), "{same}");
    }
    assert_eq!(mock.hits(), 1);
    gw.client.get(&format!("{TASK_LIST}?status=1")).await;
    assert_eq!(mock.hits(), 2);
    // A repeated parameter the gateway does not know keeps its values' order in the key:
    // KooDrive may read only the first, so `x=1&x=2` and `x=2&x=1` are different pages.
    gw.client.get(&format!("{TASK_LIST}?x=1&x=2")).await;
    let other = gw.client.get(&format!("{TASK_LIST}?x=2&x=1")).await;
    assert_eq!(cache_status(&other), "koodrive-gateway; fwd=miss; stored");
    assert_eq!(mock.last().uri.query(), Some("x=2&x=1"));
    assert_eq!(mock.hits(), 4);
}

#[tokio::test]
async fn a_bad_query_is_a_400_naming_the_parameter_with_no_upstream_call() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    for (query, param) in [
        ("pageSize=101", "pageSize"),
        ("status=7", "status"),
        ("taskType=x", "taskType"),
        ("pageCursor=abc", "pageCursor"),
        ("pageSize=%zz", "pageSize"),
    ] {
        let response = gw.client.get(&format!("{TASK_LIST}?{query}")).await;
        assert_eq!(response.status, 400, "{query}");
        let json = response.json();
        assert_eq!(json["code"], "GATEWAY_BAD_QUERY");
        assert!(json["msg"].as_str().unwrap().contains(param), "{json}");
    }
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn only_successful_storable_pages_are_stored() {
    let replies: Vec<(&str, Reply)> = vec![
        (
            "business-error",
            Reply::json(400, r#"{"code":13000201,"msg":"bad"}"#),
        ),
        (
            "nonzero-code",
            Reply::json(200, r#"{"code":13000301,"msg":"no"}"#),
        ),
        (
            "cookie",
            Reply::json(200, r#"{"code":0}"#).header("set-cookie", "a=b"),
        ),
        (
            "no-store",
            Reply::json(200, r#"{"code":0}"#).header("cache-control", "no-store"),
        ),
        (
            "too-large",
            Reply::json(200, format!(r#"{{"code":0,"pad":"{}"}}"#, "x".repeat(2048))),
        ),
    ];
    for (name, reply) in replies {
        let mock = Mock::start(move |_| reply.clone()).await;
        let gw = TestGateway::for_mock(&mock, "[cache]\nmax_entry_bytes = \"1KiB\"").await;
        let first = gw.client.get(TASK_LIST).await;
        assert_eq!(cache_status(&first), "koodrive-gateway; fwd=miss", "{name}");
        gw.client.get(TASK_LIST).await;
        assert_eq!(mock.hits(), 2, "{name} was stored");
    }
}

pub(crate) fn create(gw: &TestGateway, user: &str) -> http::Request<Full<Bytes>> {
    gw.client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .header("x-user-id", user)
        .body(Full::new(Bytes::from(r#"{"taskName":"t","taskType":0}"#)))
        .unwrap()
}
