use std::num::NonZeroU32;

use http::header::RETRY_AFTER;
use http::HeaderValue;

use super::*;
use crate::metrics::{PRIORITIES, THROTTLES};

fn limit(rps: u32, burst: u32, max_wait: Duration) -> Option<RateLimitConfig> {
    Some(RateLimitConfig {
        rps: NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN),
        burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        max_wait,
    })
}

#[test]
fn labels_are_the_ones_metrics_exports_at_zero() {
    let priorities =
        [Priority::Write, Priority::Client, Priority::Background].map(Priority::as_str);
    assert_eq!(priorities, PRIORITIES);
    assert_eq!(Throttle::ALL.map(Throttle::as_str), THROTTLES);
}

#[tokio::test]
async fn a_background_refresh_never_waits_and_is_counted_as_skipped() {
    let metrics = Metrics::new();
    let quota = Quota::new(
        limit(1, 1, Duration::from_secs(5)),
        Duration::from_secs(5),
        Arc::clone(&metrics),
    );
    assert!(quota.acquire(Ask::CLIENT, Route::TaskList).await.is_ok());
    let started = Instant::now();
    let refused = quota.acquire(Ask::BACKGROUND, Route::TaskList).await;
    assert!(matches!(refused, Err(GatewayError::RateLimited(_))));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(metrics.quota.refreshes_skipped.get(), 1);
    let labels = BudgetLabels {
        route: "task_list",
        priority: "background",
    };
    assert_eq!(metrics.quota.refused.get_or_create(&labels).get(), 1);
}

#[tokio::test]
async fn a_client_waits_for_the_next_token_within_max_wait() {
    let metrics = Metrics::new();
    let quota = Quota::new(
        limit(10, 1, Duration::from_secs(5)),
        Duration::from_secs(5),
        Arc::clone(&metrics),
    );
    assert_eq!(
        quota.acquire(Ask::CLIENT, Route::TaskRead).await.ok(),
        Some(Granted { delayed: None })
    );
    let granted = quota.acquire(Ask::CLIENT, Route::TaskRead).await;
    let delayed = granted.ok().and_then(|g| g.delayed);
    assert!(
        delayed.is_some_and(|d| d >= Duration::from_millis(50)),
        "{delayed:?}"
    );
    let labels = BudgetLabels {
        route: "task_read",
        priority: "client",
    };
    assert_eq!(metrics.quota.delayed.get_or_create(&labels).get(), 1);
    // With a stale page at hand, nobody waits.
    let started = Instant::now();
    assert!(quota
        .acquire(Ask::STALE_AT_HAND, Route::TaskRead)
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[tokio::test]
async fn a_waiting_write_takes_the_next_token_before_waiting_reads() {
    let quota = Arc::new(Quota::new(
        limit(4, 1, Duration::from_secs(10)),
        Duration::from_secs(5),
        Metrics::new(),
    ));
    assert!(quota.acquire(Ask::CLIENT, Route::TaskRead).await.is_ok());
    let (order, mut granted) = tokio::sync::mpsc::unbounded_channel();
    for who in ["read", "read", "read", "write"] {
        let ask = match who {
            "write" => Ask::WRITE,
            _ => Ask::CLIENT,
        };
        let (quota, order) = (Arc::clone(&quota), order.clone());
        tokio::spawn(async move {
            if quota.acquire(ask, Route::TaskRead).await.is_ok() {
                let _ = order.send(who);
            }
        });
        // The reads are waiting before the write arrives.
        tokio::task::yield_now().await;
    }
    let first = tokio::time::timeout(Duration::from_secs(5), granted.recv()).await;
    assert_eq!(first.ok().flatten(), Some("write"));
}

#[tokio::test]
async fn a_throttle_starts_a_cooldown_for_its_retry_after_or_the_default() {
    let metrics = Metrics::new();
    // No budget configured: the cooldown protects KooDrive all the same.
    let quota = Quota::new(None, Duration::from_secs(4), Arc::clone(&metrics));
    assert!(quota.acquire(Ask::CLIENT, Route::Other).await.is_ok());
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
    quota.throttled(Throttle::Status429, &headers);
    assert_eq!(metrics.quota.cooldown_active.get(), 1);
    match quota.acquire(Ask::CLIENT, Route::Other).await {
        Err(GatewayError::RateLimited(left)) => {
            assert!(
                left > Duration::from_secs(1) && left <= Duration::from_secs(2),
                "{left:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A body's APIG.0308 without Retry-After: the default, longer, extends it.
    let body = br#"{"error_code":"APIG.0308","error_msg":"throttled"}"#;
    quota.saw_body(http::StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
    match quota.acquire(Ask::WRITE, Route::TaskWrite).await {
        Err(GatewayError::RateLimited(left)) => assert!(left > Duration::from_secs(3), "{left:?}"),
        other => panic!("{other:?}"),
    }
    for (reason, count) in [("status_429", 1), ("apig_0308", 1)] {
        let labels = crate::metrics::ReasonLabels { reason };
        assert_eq!(metrics.quota.throttles.get_or_create(&labels).get(), count);
    }
}

#[tokio::test]
async fn a_zero_default_cooldown_turns_the_cooldown_off() {
    let quota = Quota::new(None, Duration::ZERO, Metrics::new());
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
    quota.throttled(Throttle::Status429, &headers);
    assert!(quota.acquire(Ask::CLIENT, Route::Other).await.is_ok());
}
