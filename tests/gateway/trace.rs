//! X-Traceid: forwarded when sane, generated otherwise, echoed on every response.

use crate::support::{Mock, TestGateway, TASK_LIST};

#[tokio::test]
async fn a_sane_client_trace_id_is_forwarded_and_echoed() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let id = "client-trace-0123456789:/._-";
    let response = gw.client.get_with(TASK_LIST, &[("x-traceid", id)]).await;
    assert_eq!(response.header("x-traceid"), id);
    assert_eq!(mock.last().header("x-traceid"), Some(id));
}

#[tokio::test]
async fn a_missing_trace_id_is_generated_and_sent_both_ways() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let first = gw.client.get(TASK_LIST).await;
    let second = gw.client.get(TASK_LIST).await;
    let id = first.header("x-traceid");
    assert_eq!(id.len(), 58);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(id, second.header("x-traceid"));
    assert_eq!(mock.requests()[0].header("x-traceid"), Some(id));
}

#[tokio::test]
async fn an_insane_trace_id_is_a_400_that_still_carries_one() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let too_long = "x".repeat(129);
    for bad in [too_long.as_str(), "has space", ""] {
        let response = gw.client.get_with(TASK_LIST, &[("x-traceid", bad)]).await;
        assert_eq!(response.status, 400, "{bad:?}");
        assert_eq!(response.json()["code"], "GATEWAY_BAD_TRACEID");
        assert_eq!(
            response.header("koodrive-gateway-error"),
            "GATEWAY_BAD_TRACEID"
        );
        assert_eq!(response.header("x-traceid").len(), 58);
    }
    assert_eq!(mock.hits(), 0);
}
