//! The upstream metrics: protocol errors, retries and latency count what happened on the wire.

use super::*;

/// A raw upstream that answers every request with `answer` and closes the connection.
async fn raw_upstream(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// An upstream answer with a transfer coding other than chunked is refused as a 502
/// `GATEWAY_UPSTREAM_PROTOCOL`; the upstream exchange must not label `upstream_requests_total` from
/// the status before that check: the metric says `2xx` for an exchange the gateway itself calls
/// a protocol error. The check also drops the response (and its breaker permit) unrecorded, so a
/// KooDrive (or a proxy in front of it) that always answers so never opens the breaker, although
/// the README lists protocol errors among the failures that do.
#[tokio::test]
async fn a_refused_transfer_coding_is_a_protocol_error_in_the_metrics() {
    let url = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 2\nbreaker_cooldown = \"60s\"\n");
    let gw = TestGateway::for_mock_url(&url, &overlay).await;
    for _ in 0..2 {
        let response = gw.client.get("/koodrive/ose/v1/files/x").await;
        assert_eq!(response.status, 502);
        assert_eq!(
            response.header("koodrive-gateway-error"),
            "GATEWAY_UPSTREAM_PROTOCOL"
        );
    }
    // Two protocol errors opened the breaker: the third is refused without a call.
    let refused = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(
        refused.header("koodrive-gateway-error"),
        "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
    );
    let metrics = gw.metrics().await;
    let mut wrong = Vec::new();
    let protocol = sum(
        &metrics,
        "koodrive_gateway_upstream_requests_total",
        &["outcome=\"protocol_error\""],
    );
    let ok = sum(
        &metrics,
        "koodrive_gateway_upstream_requests_total",
        &["outcome=\"2xx\""],
    );
    if protocol != 2.0 || ok != 0.0 {
        wrong.push(format!(
            "2 answers refused as GATEWAY_UPSTREAM_PROTOCOL: upstream outcome protocol_error = {protocol}, 2xx = {ok}"
        ));
    }
    let open = sum(&metrics, "koodrive_gateway_breaker_open", &[]);
    if open != 1.0 {
        wrong.push(format!(
            "2 consecutive protocol errors with breaker_failures = 2: breaker_open = {open}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        dump(&metrics, "koodrive_gateway_upstream_requests")
    );
}

/// A retried GET (reset before any response byte, then answered on a fresh
/// connection) is two calls to KooDrive, but `upstream_requests_total` counts one exchange (the
/// outcome of the retry only), and no series counted the reset or the retry: an upstream that
/// resets every other connection looked perfectly healthy in the metrics.
/// `upstream_retries_total` counts the retries.
#[tokio::test]
async fn a_retried_call_is_counted_as_two_calls() {
    let fault = FaultServer::start(Fault::ResetOnce).await;
    let gw = TestGateway::for_mock_url(&fault.url(), TOKEN_MODE).await;
    let response = gw.client.get("/koodrive/ose/v1/files/x").await;
    assert_eq!(response.status, 200);
    let metrics = gw.metrics().await;
    // One exchange (its outcome, its latency), and the retry within it counted on its own.
    let calls = sum(&metrics, "koodrive_gateway_upstream_requests_total", &[]);
    let retries = sum(&metrics, "koodrive_gateway_upstream_retries_total", &[]);
    assert_eq!(
        (calls, calls + retries),
        (1.0, fault.hits() as f64),
        "KooDrive accepted {} connections for one retried GET; the metrics say:\n{}",
        fault.hits(),
        dump(&metrics, "koodrive_gateway_upstream")
    );
}

/// `upstream_duration_seconds` is "time to KooDrive's response head", but
/// the exchange must not observe it for every outcome, including `circuit_open` fast-fails that
/// never left the gateway (and client-body failures): while KooDrive is down and the breaker is
/// open, the upstream latency histogram fills with ~0 s samples and its quantiles drop.
#[tokio::test]
async fn upstream_latency_is_not_diluted_by_calls_never_made() {
    let mock = Mock::start(|_| Reply::json(500, r#"{"code":"1","msg":"boom"}"#)).await;
    let overlay =
        format!("{TOKEN_MODE}[upstream]\nbreaker_failures = 1\nbreaker_cooldown = \"60s\"\n");
    let gw = TestGateway::for_mock(&mock, &overlay).await;
    assert_eq!(gw.client.get("/koodrive/ose/v1/files/x").await.status, 500);
    for _ in 0..5 {
        let fast = gw.client.get("/koodrive/ose/v1/files/x").await;
        assert_eq!(
            fast.header("koodrive-gateway-error"),
            "GATEWAY_UPSTREAM_CIRCUIT_OPEN"
        );
    }
    let metrics = gw.metrics().await;
    let observed = sum(
        &metrics,
        "koodrive_gateway_upstream_duration_seconds_count",
        &[],
    );
    assert_eq!(
        observed,
        mock.hits() as f64,
        "KooDrive saw {} request(s); its response-head latency histogram holds:\n{}",
        mock.hits(),
        dump(&metrics, "koodrive_gateway_upstream")
    );
}
