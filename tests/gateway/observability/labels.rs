//! Metric label values: lowercase as documented, and present from the start.

use super::*;

/// Every label value in the README is lowercase (`task_list`, `2xx`, `hit`,
/// `protocol_error`) and `metrics.rs` says an unusual method is `other`, but the derived
/// `EncodeLabelValue` writes the variant name: `method="Other"`. A query for `method="other"`
/// finds nothing.
#[tokio::test]
async fn an_unusual_method_is_labelled_other() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let purge = gw
        .client
        .request(
            Method::from_bytes(b"PURGE").unwrap(),
            "/koodrive/ose/v1/files/x",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.client.send(purge).await.status, 200);
    let metrics = gw.metrics().await;
    assert_eq!(
        sum(
            &metrics,
            "koodrive_gateway_requests_total",
            &["method=\"other\""]
        ),
        1.0,
        "{}",
        dump(&metrics, "koodrive_gateway_requests_total")
    );
}

/// The labelled families whose label values are a fixed, documented set are not
/// created until their first event, so a fresh gateway's `/metrics` has no
/// `breaker_transitions_total{reason="open"}` (nor any stale-served or invalidation series). A
/// series born at 1 has no earlier sample, so `increase()`/`rate()` read the first breaker
/// opening, the first stale-if-error and the first write invalidation as no change: an alert on
/// `increase(koodrive_gateway_breaker_transitions_total{reason="open"}[5m]) > 0` misses the
/// first outage after every restart. (`metrics.rs` already creates the hit series up front.)
#[tokio::test]
async fn documented_label_values_are_exposed_from_the_start() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, TOKEN_MODE).await;
    let metrics = gw.metrics().await;
    let expected = [
        r#"koodrive_gateway_breaker_transitions_total{reason="open"}"#,
        r#"koodrive_gateway_breaker_transitions_total{reason="half_open"}"#,
        r#"koodrive_gateway_breaker_transitions_total{reason="closed"}"#,
        r#"koodrive_gateway_cache_stale_served_total{reason="stale-while-revalidate"}"#,
        r#"koodrive_gateway_cache_stale_served_total{reason="stale-if-error"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="write"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="purge_user"}"#,
        r#"koodrive_gateway_cache_invalidations_total{reason="purge_all"}"#,
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| !metrics.contains_key(**key))
        .collect();
    assert!(
        missing.is_empty(),
        "series missing from a fresh gateway's /metrics: {missing:#?}"
    );
}
