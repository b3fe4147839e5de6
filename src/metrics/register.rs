//! The exported series: each registered with its help text, and the known ones created at zero
//! from the start (a series born at 1 has no earlier sample, and `rate()` and `increase()` would
//! miss its first event after each restart).

use prometheus_client::registry::Registry;

use super::{
    known_requests, KeyLabels, ListenerLabels, Metrics, ReasonLabels, RouteLabels, UpstreamLabels,
    UPSTREAM_OUTCOMES,
};
use crate::route::Route;

/// Creates every documented series at 0.
pub(super) fn zero_known_series(m: &Metrics) {
    // Every documented reason from the start, at 0: a series born at 1 has no earlier sample,
    // and rate() and increase() would miss the first breaker opening after each restart.
    let reasons = [
        (&m.breaker_transitions, &["open", "half_open", "closed"][..]),
        (
            &m.cache_stale_served,
            &["stale-while-revalidate", "stale-if-error", "rate-limited"][..],
        ),
        (
            &m.cache_invalidations,
            &["write", "purge_user", "purge_all"][..],
        ),
        (
            &m.normalize_fallbacks,
            &[
                "invalid_json",
                "not_utf8",
                "not_an_object",
                "not_json",
                "too_large",
                "unsupported_encoding",
                "over_budget",
            ][..],
        ),
    ];
    for (family, names) in reasons {
        for &reason in names {
            drop(family.get_or_create(&ReasonLabels { reason }));
        }
    }
    for key in crate::config::SECRET_FILE_KEYS {
        drop(m.secret_file_unreadable.get_or_create(&KeyLabels { key }));
    }
    for labels in known_requests() {
        drop(m.requests.get_or_create(&labels));
    }
    for route in Route::ALL.map(Route::name) {
        drop(m.request_duration.get_or_create(&RouteLabels { route }));
        drop(m.upstream_duration.get_or_create(&RouteLabels { route }));
        for outcome in UPSTREAM_OUTCOMES {
            drop(
                m.upstream_requests
                    .get_or_create(&UpstreamLabels { route, outcome }),
            );
        }
    }
    for listener in ["proxy", "admin"] {
        let labels = ListenerLabels { listener };
        drop(m.connections.get_or_create(&labels));
        drop(m.connections_refused.get_or_create(&labels));
    }
}

/// Registers every series but `build_info`.
pub(super) fn all(m: &Metrics, registry: &mut Registry) {
    requests(m, registry);
    cache_and_upstream_health(m, registry);
}

/// Requests, connections and the exchanges with KooDrive.
fn requests(m: &Metrics, registry: &mut Registry) {
    registry.register("requests", "Client requests answered", m.requests.clone());
    registry.register(
        "connections",
        "Client connections open, by listener",
        m.connections.clone(),
    );
    registry.register(
        "connections_refused",
        "Client connections closed at once: their listener was at its max_connections",
        m.connections_refused.clone(),
    );
    registry.register(
        "buffered_bytes",
        "Bytes held in buffered request and response bodies",
        m.buffered_bytes.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Time to answer a client request (headers)",
        m.request_duration.clone(),
    );
    registry.register(
        "upstream_requests",
        "Requests sent to KooDrive, by outcome",
        m.upstream_requests.clone(),
    );
    registry.register(
        "upstream_retries",
        "Requests sent to KooDrive again on a fresh connection (connect failed, or reset before any response byte)",
        m.upstream_retries.clone(),
    );
    registry.register(
        "shed",
        "Requests refused with 503 GATEWAY_OVERLOADED: over server.max_in_flight",
        m.shed.clone(),
    );
    registry.register(
        "upstream_duration_seconds",
        "Time to KooDrive's response headers",
        m.upstream_duration.clone(),
    );
}

/// The cache, normalization, in-flight load, the breaker and secret files.
fn cache_and_upstream_health(m: &Metrics, registry: &mut Registry) {
    registry.register(
        "cache_hits",
        "Task-list requests served fresh from the cache",
        m.cache_hits.clone(),
    );
    registry.register(
        "cache_misses",
        "Task-list requests that led an upstream fetch",
        m.cache_misses.clone(),
    );
    registry.register(
        "cache_collapsed",
        "Task-list requests that joined another's fetch",
        m.cache_collapsed.clone(),
    );
    registry.register(
        "cache_stale_served",
        "Stale task-list pages served, by reason",
        m.cache_stale_served.clone(),
    );
    registry.register(
        "cache_invalidations",
        "Cache invalidations, by reason",
        m.cache_invalidations.clone(),
    );
    registry.register(
        "cache_entries",
        "Task-list pages held",
        m.cache_entries.clone(),
    );
    registry.register(
        "cache_bytes",
        "Weighted size of the task-list cache in bytes",
        m.cache_bytes.clone(),
    );
    registry.register(
        "normalize_fallbacks",
        "Bodies passed through un-normalized, by reason",
        m.normalize_fallbacks.clone(),
    );
    registry.register(
        "normalize_mismatches",
        "Fields whose type could not be coerced",
        m.normalize_mismatches.clone(),
    );
    registry.register(
        "in_flight",
        "Client requests in flight, and task-list fetches that outlive theirs",
        m.in_flight.clone(),
    );
    registry.register(
        "breaker_open",
        "1 while the upstream circuit breaker is open",
        m.breaker_open.clone(),
    );
    registry.register(
        "breaker_transitions",
        "Circuit breaker state changes, by new state",
        m.breaker_transitions.clone(),
    );
    registry.register(
        "secret_file_unreadable",
        "1 while a watched secret file cannot be read (the last value read is still used), by config key",
        m.secret_file_unreadable.clone(),
    );
}
