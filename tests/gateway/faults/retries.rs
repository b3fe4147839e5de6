//! Which requests are retried after an upstream reset, and how often.

use super::*;

#[tokio::test]
async fn an_idempotent_request_reset_before_headers_is_retried_once_on_a_fresh_connection() {
    let server = FaultServer::start(Fault::ResetOnce).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(server.hits(), 2, "one reset, one retry");
}

/// Retried only before any response byte: once part of the head has come, KooDrive has started
/// answering, and a second call could do twice what the first did.
#[tokio::test]
async fn a_get_reset_after_part_of_the_head_is_not_retried() {
    let server = FaultServer::start(Fault::ResetMidHead).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    let response = gw.client.get("/koodrive/ose/v1/task/1").await;
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_PROTOCOL");
    assert_eq!(server.hits(), 1, "retried after part of the head");
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let server = FaultServer::start(Fault::ResetBeforeHeaders).await;
    let gw = TestGateway::for_mock_url(&server.url(), "").await;
    assert_eq!(
        gw.client.post_with(TASK_CREATE, &[], "{}").await.status,
        502
    );
    assert_eq!(server.hits(), 1);
    // A GET with the same fault: retried once, then the error.
    assert_eq!(gw.client.get("/koodrive/ose/v1/task/1").await.status, 502);
    assert_eq!(server.hits(), 3);
}
