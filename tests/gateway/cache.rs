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

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_request() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let counter = AtomicU64::new(0);
    let mock = Mock::start(move |seen| {
        page_for(seen, counter.fetch_add(1, Ordering::SeqCst) + 1).gate(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(&format!("{TASK_LIST}?status=1")).await })
        })
        .collect();
    mock.wait_for_hits(1).await;
    // Let the others pile up behind the flight; late ones find the stored page instead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.notify_one();
    let mut statuses = HashMap::new();
    for request in requests {
        let response = within("a collapsed response", request).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(version(&response), 1);
        let kind = cache_status(&response)
            .split("; ")
            .nth(1)
            .unwrap()
            .to_owned();
        *statuses.entry(kind).or_insert(0) += 1;
        let full = cache_status(&response);
        if full.ends_with("stored") {
            *statuses.entry("stored".into()).or_insert(0) += 1;
        } else if full.ends_with("collapsed") {
            *statuses.entry("collapsed".into()).or_insert(0) += 1;
        }
    }
    assert_eq!(mock.hits(), 1);
    let misses = statuses.get("fwd=miss").copied().unwrap_or(0);
    let hits = statuses.get("hit").copied().unwrap_or(0);
    assert_eq!(misses + hits, 200, "{statuses:?}");
    assert!(misses > 1, "waiters joined the flight: {statuses:?}");
    assert_eq!(statuses.get("stored"), Some(&1), "one leader: {statuses:?}");
    assert_eq!(
        statuses.get("collapsed"),
        Some(&(misses - 1)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_failed_leader_fails_every_waiter_with_its_error() {
    let mock = Mock::start(|_| Reply::drop_connection().delay(Duration::from_millis(300))).await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(TASK_LIST).await })
        })
        .collect();
    for request in requests {
        let response = within("a waiter", request).await.unwrap();
        assert_eq!(response.status, 502);
        assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_PROTOCOL");
    }
    assert!(mock.hits() <= 2, "{} upstream calls", mock.hits());
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let mock = versioned_mock().await;
    let overlay = "[cache]\nttl = \"200ms\"\nstale_while_revalidate = \"60s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale: Vec<TestResponse> = futures_join(&gw, 5).await;
    for response in &stale {
        assert_eq!(version(response), 1, "the stale page is served at once");
        let status = cache_status(response);
        assert!(
            status.contains("hit") && status.contains("detail=stale-while-revalidate"),
            "{status}"
        );
        assert!(status.contains("ttl=-"), "{status}");
    }
    mock.wait_for_hits(2).await;
    // The refresh carries the trace id of the request that started it.
    let refresh_trace_id = mock.requests()[1].header("x-traceid").map(str::to_owned);
    assert!(
        stale
            .iter()
            .any(|r| Some(r.header("x-traceid")) == refresh_trace_id.as_deref()),
        "{refresh_trace_id:?}"
    );
    within("the refreshed page", async {
        loop {
            let response = gw.client.get(TASK_LIST).await;
            if version(&response) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(mock.hits(), 2, "one background refresh for the key");
}

async fn futures_join(gw: &TestGateway, n: usize) -> Vec<TestResponse> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(TASK_LIST).await })
        })
        .collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn stale_if_error_covers_upstream_failures_but_not_business_errors() {
    let mode = Arc::new(AtomicUsize::new(0));
    let state = Arc::clone(&mode);
    let mock = Mock::start(move |seen| match state.load(Ordering::SeqCst) {
        0 => page_for(seen, 1),
        1 => Reply::json(503, r#"{"code":13000500,"msg":"down"}"#),
        2 => Reply::drop_connection(),
        3 => Reply::json(400, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#),
        4 => Reply::ok().delay(Duration::from_secs(5)),
        _ => Reply::json(400, r#"{"code":13000201,"msg":"bad request"}"#),
    })
    .await;
    let overlay =
        "[cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"60s\"\n\
                   [upstream]\ntimeout = \"500ms\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    for (failure, fwd) in [
        (1, "fwd-status=503"),
        (2, "fwd=miss"),
        (3, "fwd-status=400"),
        (4, "fwd=miss"),
    ] {
        mode.store(failure, Ordering::SeqCst);
        let response = gw.client.get(TASK_LIST).await;
        assert_eq!(
            response.status,
            200,
            "failure {failure}: {}",
            response.text()
        );
        assert_eq!(version(&response), 1);
        let status = cache_status(&response);
        assert!(
            status.contains("detail=stale-if-error") && status.contains(fwd),
            "{failure}: {status}"
        );
    }
    mode.store(5, Ordering::SeqCst);
    let response = gw.client.get(TASK_LIST).await;
    assert_eq!(
        response.status, 400,
        "a business error is passed through, not masked"
    );
    assert_eq!(response.json()["code"], "13000201");
}

#[tokio::test]
async fn client_no_cache_refreshes_and_no_store_stores_nothing() {
    let mock = versioned_mock().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    assert_eq!(version(&gw.client.get(TASK_LIST).await), 1);
    for headers in [
        [("cache-control", "no-cache")],
        [("cache-control", "max-age=0")],
        [("cache-control", "max-age=00")],
        [("cache-control", "max-age=\"0\"")],
        [("pragma", "no-cache")],
    ] {
        let before = mock.hits();
        let response = gw.client.get_with(TASK_LIST, &headers).await;
        assert_eq!(
            cache_status(&response),
            "koodrive-gateway; fwd=request; stored"
        );
        assert_eq!(mock.hits(), before + 1);
        assert_eq!(
            version(&gw.client.get(TASK_LIST).await),
            version(&response),
            "stored for later"
        );
    }
    let stored = version(&gw.client.get(TASK_LIST).await);
    let response = gw
        .client
        .get_with(TASK_LIST, &[("cache-control", "no-store")])
        .await;
    assert_eq!(cache_status(&response), "koodrive-gateway; fwd=request");
    assert_eq!(version(&response), stored + 1);
    assert_eq!(
        version(&gw.client.get(TASK_LIST).await),
        stored,
        "no-store stored nothing"
    );
}

pub(crate) fn create(gw: &TestGateway, user: &str) -> http::Request<Full<Bytes>> {
    gw.client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .header("x-user-id", user)
        .body(Full::new(Bytes::from(r#"{"taskName":"t","taskType":0}"#)))
        .unwrap()
}

/// A caller's validators and range stay with that caller: the shared fetch asks KooDrive for
/// the whole page, so a conditional request leading a flight cannot hand its 304 to waiters
/// that asked unconditionally, nor have a 304 or 206 refresh a stale page.
#[tokio::test]
async fn a_conditional_request_leading_a_flight_fetches_the_whole_page_for_everyone() {
    let gate = Arc::new(Notify::new());
    let held = Arc::clone(&gate);
    let mock = Mock::start(move |seen| {
        let conditional = ["if-none-match", "if-modified-since", "range"]
            .iter()
            .any(|name| seen.header(name).is_some());
        let reply = match conditional {
            true => Reply::json(304, ""),
            false => page_for(seen, 1),
        };
        reply.gate(Arc::clone(&held))
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    let leader = {
        let client = gw.client.clone();
        tokio::spawn(async move {
            let validators = [
                ("if-none-match", "\"etag-the-leader-has\""),
                ("if-modified-since", "Sun, 29 Nov 2026 05:00:00 GMT"),
                ("range", "bytes=0-9"),
            ];
            client.get_with(TASK_LIST, &validators).await
        })
    };
    mock.wait_for_hits(1).await;
    let waiter = {
        let client = gw.client.clone();
        tokio::spawn(async move { client.get(TASK_LIST).await })
    };
    // Let the waiter join the flight before KooDrive answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.notify_one();
    let leader = within("the leader", leader).await.unwrap();
    let waiter = within("the waiter", waiter).await.unwrap();
    for response in [&leader, &waiter] {
        assert_eq!(response.status, 200, "{}", cache_status(response));
        assert_eq!(version(response), 1);
    }
    assert_eq!(mock.hits(), 1, "one flight");
    for name in ["if-none-match", "if-modified-since", "range"] {
        assert_eq!(mock.last().header(name), None, "{name} went upstream");
    }
    assert!(cache_status(&leader).ends_with("stored"));
}
