//! `/metrics` after known traffic: hits, misses, collapsed, stale, errors, invalidations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::sync::Notify;

use crate::support::{within, Mock, Reply, TestGateway, TASK_CREATE, TASK_LIST};

fn value(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let mode = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (state, held) = (Arc::clone(&mode), Arc::clone(&gate));
    let mock = Mock::start(move |seen| {
        if seen.method == Method::POST {
            return Reply::json(200, r#"{"code":0,"msg":"Success.","taskId":"1"}"#);
        }
        match (state.load(Ordering::SeqCst), seen.uri.query().unwrap_or("")) {
            (1, _) => Reply::drop_connection(),
            (_, "bad") => Reply::json(200, "{not json"),
            (_, q) if q.starts_with("status=2") => {
                Reply::json(200, r#"{"taskListDtos":[],"code":0}"#).gate(Arc::clone(&held))
            }
            _ => Reply::json(200, r#"{"taskListDtos":[],"code":0,"nextCursor":5}"#),
        }
    })
    .await;
    let overlay =
        "[cache]\nttl = \"300ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"60s\"";
    let gw = TestGateway::for_mock(&mock, overlay).await;

    // One miss, two hits.
    for _ in 0..3 {
        assert_eq!(
            gw.client.get(&format!("{TASK_LIST}?status=1")).await.status,
            200
        );
    }
    // Five concurrent misses for another key: one leads, the rest collapse (or hit, if late).
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move { client.get(&format!("{TASK_LIST}?status=2")).await })
        })
        .collect();
    mock.wait_for_hits(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.notify_one();
    for request in requests {
        assert_eq!(within("collapsed", request).await.unwrap().status, 200);
    }
    // An unparseable page: a normalize fallback, not stored.
    gw.client.get(&format!("{TASK_LIST}?bad")).await;
    // Another user's write invalidates theirs; KooDrive then fails: a stale page for status=2,
    // a 502 for a new key.
    assert_eq!(
        gw.client
            .post_with(TASK_CREATE, &[("x-user-id", "77")], "{}")
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    mode.store(1, Ordering::SeqCst);
    assert_eq!(
        gw.client.get(&format!("{TASK_LIST}?status=2")).await.status,
        200
    );
    assert_eq!(
        gw.client.get(&format!("{TASK_LIST}?status=3")).await.status,
        502
    );

    let m = gw.metrics().await;
    let p = "koodrive_gateway_";
    assert_eq!(
        value(&m, &format!("{p}cache_hits_total"))
            + value(&m, &format!("{p}cache_collapsed_total")),
        6.0
    );
    assert!(value(&m, &format!("{p}cache_collapsed_total")) >= 1.0);
    // status=1, status=2, bad, then the refetch of status=2 and the new status=3 (both failing).
    assert_eq!(value(&m, &format!("{p}cache_misses_total")), 5.0);
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}cache_stale_served_total{{reason="stale-if-error"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}cache_invalidations_total{{reason="write"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}normalize_fallbacks_total{{reason="invalid_json"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(
                r#"{p}requests_total{{route="task_list",method="GET",status_class="5xx",cache="none"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(
                r#"{p}requests_total{{route="task_list",method="GET",status_class="2xx",cache="hit"}}"#
            )
        ),
        value(&m, &format!("{p}cache_hits_total"))
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}upstream_requests_total{{route="task_write",outcome="2xx"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}upstream_requests_total{{route="task_list",outcome="protocol_error"}}"#)
        ),
        2.0
    );
    assert_eq!(value(&m, &format!("{p}in_flight")), 0.0);
    assert!(value(&m, &format!("{p}cache_entries")) >= 1.0);
    assert!(value(&m, &format!("{p}cache_bytes")) > 0.0);
    assert_eq!(
        value(
            &m,
            &format!(r#"{p}request_duration_seconds_count{{route="task_list"}}"#)
        ),
        11.0
    );
    assert!(m.keys().any(|k| k.starts_with(&format!("{p}build_info{{"))));
    assert!(m
        .keys()
        .all(|k| !k.contains("1505084218764547200") && !k.contains("/koodrive")));
}

/// A fresh gateway exports the known label sets of every labelled family at 0, so a dashboard or
/// an alert on their rate shows 0, not nothing, before the first call to KooDrive.
#[tokio::test]
async fn a_fresh_gateway_exports_known_series_at_zero() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let m = gw.metrics().await;
    let p = "koodrive_gateway_";
    let mut expected = vec![format!("{p}shed_total")];
    for route in ["task_list", "task_read", "task_write", "other"] {
        for outcome in [
            "2xx",
            "4xx",
            "5xx",
            "timeout",
            "connect_error",
            "protocol_error",
            "circuit_open",
            "client_error",
        ] {
            expected.push(format!(
                r#"{p}upstream_requests_total{{route="{route}",outcome="{outcome}"}}"#
            ));
        }
        expected.push(format!(
            r#"{p}upstream_duration_seconds_count{{route="{route}"}}"#
        ));
        expected.push(format!(
            r#"{p}request_duration_seconds_count{{route="{route}"}}"#
        ));
    }
    for (status_class, cache) in [
        ("2xx", "hit"),
        ("2xx", "stale"),
        ("2xx", "miss"),
        ("2xx", "collapsed"),
        ("4xx", "none"),
        ("5xx", "none"),
    ] {
        expected.push(format!(
            r#"{p}requests_total{{route="task_list",method="GET",status_class="{status_class}",cache="{cache}"}}"#
        ));
    }
    for (route, method) in [
        ("task_read", "GET"),
        ("task_write", "POST"),
        ("other", "GET"),
    ] {
        for status_class in ["2xx", "4xx", "5xx"] {
            expected.push(format!(
                r#"{p}requests_total{{route="{route}",method="{method}",status_class="{status_class}",cache="none"}}"#
            ));
        }
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|series| m.get(series.as_str()) != Some(&0.0))
        .collect();
    assert!(wrong.is_empty(), "not at 0 on a fresh gateway: {wrong:#?}");
    assert_eq!(mock.hits(), 0);
}

/// A request refused over `server.max_in_flight` is counted in `shed_total`, the series the
/// shed-load alert watches (a 5xx in `requests_total` does not tell it from KooDrive's own).
#[tokio::test]
async fn shed_requests_are_counted() {
    let mock = Mock::with_slow_path(Duration::from_millis(1500)).await;
    let gw = TestGateway::for_mock(&mock, "[server]\nmax_in_flight = 1").await;
    let client = gw.client.clone();
    let slow = tokio::spawn(async move { client.get("/koodrive/ose/v1/task/slow").await });
    mock.wait_for_hits(1).await;
    for _ in 0..2 {
        assert_eq!(gw.client.get(TASK_LIST).await.status, 503);
    }
    assert_eq!(
        value(&gw.metrics().await, "koodrive_gateway_shed_total"),
        2.0
    );
    assert_eq!(within("the slow request", slow).await.unwrap().status, 200);
    assert_eq!(gw.client.get(TASK_LIST).await.status, 200);
    assert_eq!(
        value(&gw.metrics().await, "koodrive_gateway_shed_total"),
        2.0,
        "an admitted request is not shed"
    );
}

/// README, metrics: "`koodrive_gateway_cache_misses_total` | counter | | requests that fetched
/// (misses, no-cache, no-store)".
///
/// A task-list page over `normalize.max_body` is counted twice for the one request that fetched
/// it: once as the flight's leader (`miss`), then again when that same request streams the page
/// through itself (`pass`).
#[tokio::test]
async fn a_too_large_page_is_one_miss_for_the_one_request_that_fetched_it() {
    let big = format!(
        r#"{{"taskListDtos":[],"pad":"{}","code":0,"msg":"Success."}}"#,
        "x".repeat(4096)
    );
    let mock = Mock::start(move |_| Reply::json(200, big.clone())).await;
    let gw = TestGateway::for_mock(&mock, "[normalize]\nmax_body = \"1KiB\"").await;
    let response = gw.client.get(TASK_LIST).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.header("cache-status").contains("fwd=bypass"),
        "{:?}",
        response.header("cache-status")
    );
    let metrics = gw.metrics().await;
    let requests: f64 = metrics
        .iter()
        .filter(|(name, _)| name.starts_with("koodrive_gateway_requests_total{"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests, 1.0, "one client request");
    assert_eq!(
        metrics["koodrive_gateway_cache_misses_total"],
        1.0,
        "one request fetched one page (upstream calls: {})",
        mock.hits()
    );
}

/// README, Metrics: "Every documented `reason` series exists from the start, at 0". The
/// documented reasons of `koodrive_gateway_normalize_fallbacks_total` are missing until the first
/// fallback (the family is not even in the exposition).
#[tokio::test]
async fn every_documented_normalize_fallback_reason_exists_from_the_start() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let metrics = gw.metrics().await;
    for reason in [
        "invalid_json",
        "not_utf8",
        "not_an_object",
        "not_json",
        "too_large",
        "unsupported_encoding",
    ] {
        let key = format!("koodrive_gateway_normalize_fallbacks_total{{reason=\"{reason}\"}}");
        assert_eq!(metrics.get(&key), Some(&0.0), "{key} missing at start");
    }
}
