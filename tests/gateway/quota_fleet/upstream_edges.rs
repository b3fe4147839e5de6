//! Where the budget meets the upstream client: a throttle in a 5xx body is no breaker failure,
//! and a retry on a fresh connection spends a token of its own.

use crate::support::faults::{Fault, FaultServer};
use crate::support::{Mock, Reply, TestGateway};

const TASK: &str = "/koodrive/ose/v1/task/";

/// A 503 whose body carries `APIG.0308` is KooDrive refusing, not failing: with a breaker that
/// opens after two failures, three such answers in a row leave it shut and every call goes out.
#[tokio::test]
async fn a_5xx_carrying_apig_0308_is_never_a_breaker_failure() {
    let mock = Mock::start(|_| {
        Reply::json(
            503,
            r#"{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}"#,
        )
    })
    .await;
    // The cooldown is off so that every request reaches KooDrive.
    let overlay = "[upstream]\nbreaker_failures = 2\nthrottle_cooldown = \"0s\"\n";
    let gw = TestGateway::for_mock(&mock, overlay).await;
    for i in 0..3 {
        let answer = gw.client.get(&format!("{TASK}{i}")).await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(
            answer.text().contains("APIG.0308"),
            "KooDrive's own: {}",
            answer.text()
        );
    }
    assert_eq!(mock.hits(), 3, "the breaker never opened");
    let metrics = gw.metrics().await;
    assert_eq!(metrics["koodrive_gateway_breaker_open"], 0.0);
    assert_eq!(
        metrics[r#"koodrive_gateway_upstream_throttles_total{reason="apig_0308"}"#],
        3.0
    );
}

/// The same 503 without the throttling code still counts: the breaker opens after two.
#[tokio::test]
async fn a_5xx_without_the_throttling_code_still_opens_the_breaker() {
    let mock = Mock::start(|_| Reply::json(503, r#"{"code":13000201,"msg":"down"}"#)).await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\nbreaker_failures = 2\n").await;
    for i in 0..3 {
        gw.client.get(&format!("{TASK}{i}")).await;
    }
    assert_eq!(mock.hits(), 2, "the third was refused by the open breaker");
    assert_eq!(gw.metrics().await["koodrive_gateway_breaker_open"], 1.0);
}

/// Every call that reaches KooDrive took a token: with one token a minute and nobody allowed to
/// wait, a GET reset before its head is not retried (the retry would be a second call).
#[tokio::test]
async fn a_retry_on_a_fresh_connection_takes_a_token_of_its_own() {
    let server = FaultServer::start(Fault::ResetOnce).await;
    let overlay = "[upstream.rate_limit]\nrps = 1\nburst = 1\nmax_wait = \"0s\"\n";
    let gw = TestGateway::for_mock_url(&server.url(), overlay).await;
    let answer = gw.client.get(&format!("{TASK}1")).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(server.hits(), 1, "no retry without a second token");
    assert_eq!(
        gw.metrics().await["koodrive_gateway_upstream_retries_total"],
        0.0
    );
    // With budget to spare, the same fault is retried once (two tokens, two calls).
    let server = FaultServer::start(Fault::ResetOnce).await;
    let overlay = "[upstream.rate_limit]\nrps = 1\nburst = 2\nmax_wait = \"0s\"\n";
    let gw = TestGateway::for_mock_url(&server.url(), overlay).await;
    assert_eq!(gw.client.get(&format!("{TASK}1")).await.status, 200);
    assert_eq!(server.hits(), 2);
}
