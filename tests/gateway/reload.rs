//! Live reload: TTLs and credentials change without dropping requests in flight or the cache.

use std::time::Duration;

use crate::support::{config, within, Mock, TestGateway, TASK_LIST};

#[tokio::test]
async fn reload_changes_the_token_without_failing_requests_in_flight() {
    let mock = Mock::with_slow_path(Duration::from_millis(800)).await;
    let token = |t: &str| format!("[auth]\nmode = \"token\"\naccess_token = \"{t}\"");
    let gw = TestGateway::for_mock(&mock, &token("before")).await;
    let client = gw.client.clone();
    let slow = tokio::spawn(async move { client.get("/koodrive/ose/v1/task/slow").await });
    mock.wait_for_hits(1).await;

    gw.running()
        .reload(&config(&mock.url(), &token("after")))
        .await
        .unwrap();
    assert_eq!(
        within("the request in flight", slow).await.unwrap().status,
        200
    );
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some("Bearer before")
    );
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 200);
    assert_eq!(mock.last().header("authorization"), Some("Bearer after"));
}

#[tokio::test]
async fn reload_changes_the_ttl_and_keeps_the_cache() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "[cache]\nttl = \"60s\"").await;
    gw.client.get(TASK_LIST).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still fresh under the old TTL: kept across the reload, then judged by the new one.
    gw.running()
        .reload(&config(
            &mock.url(),
            "[cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"",
        ))
        .await
        .unwrap();
    let response = gw.client.get(TASK_LIST).await;
    assert!(
        response.header("cache-status").contains("fwd=miss"),
        "{}",
        response.header("cache-status")
    );
    assert_eq!(mock.hits(), 2);
    let response = gw.client.get(TASK_LIST).await;
    assert!(response.header("cache-status").contains("hit"));
}

#[tokio::test]
async fn a_reload_whose_secret_file_is_unreadable_is_refused() {
    let mock = Mock::ok().await;
    let gw =
        TestGateway::for_mock(&mock, "[auth]\nmode = \"token\"\naccess_token = \"kept\"").await;
    let bad = config(
        &mock.url(),
        "[auth]\nmode = \"token\"\naccess_token_file = \"/nonexistent/koodrive-token\"",
    );
    assert!(gw.running().reload(&bad).await.is_err());
    gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(mock.last().header("authorization"), Some("Bearer kept"));
}
