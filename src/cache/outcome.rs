//! What the cache did for a request, as one type: it alone says the `Cache-Status` value
//! (RFC 9211), the access log's `cache` field and the request metric's `cache` label, and which
//! cache counter a decision adds to. A new outcome is one variant here.

use std::sync::OnceLock;

use http::{HeaderValue, StatusCode};

use crate::cache::policy::{cache_name, CACHE_NAME};
use crate::metrics::{Metrics, ReasonLabels};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A route the cache has nothing to do with, or an answer the gateway made as an error.
    None,
    /// A fresh stored page; `ttl` seconds of freshness left.
    Hit { ttl: i64 },
    /// A fresh page from the fleet's shared tier (Redis), after a first-tier miss.
    SharedHit { ttl: i64 },
    /// A stale page served while one background refresh runs.
    StaleWhileRevalidate { ttl: i64 },
    /// A stale page served because KooDrive failed: with its status when it answered.
    StaleIfError {
        ttl: i64,
        upstream: Option<StatusCode>,
    },
    /// A stale page served because the upstream budget (or KooDrive's cooldown) held the fetch
    /// back.
    StaleRateLimited { ttl: i64 },
    /// This request led the fetch; `stored` when its page went into the cache.
    Miss { stored: bool },
    /// This request joined another's fetch for the same key.
    Collapsed,
    /// The client asked for a fresh page (`no-cache`); `stored` as for a miss.
    Refresh { stored: bool },
    /// The client asked that nothing be stored (`no-store`).
    Bypass,
    /// The page cannot be shared: fetched by this request alone and streamed through.
    Pass(PassReason),
}

/// Why a page is passed through rather than shared (Pingora's `NoCacheReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// Over `normalize.max_body`.
    TooLarge,
    /// For the request that fetched it only: `Set-Cookie`, or a `Vary` the key does not hold.
    Private,
}

impl PassReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PassReason::TooLarge => "too-large",
            PassReason::Private => "private",
        }
    }
}

/// A `Cache-Status` value that never changes, made at compile time.
macro_rules! fixed {
    ($rest:literal) => {
        Some(HeaderValue::from_static(concat!(cache_name!(), $rest)))
    };
}

impl CacheOutcome {
    /// The bounded label of the access log's `cache` field and of the request metrics.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::None => "none",
            CacheOutcome::Hit { .. } => "hit",
            CacheOutcome::SharedHit { .. } => "shared-hit",
            CacheOutcome::StaleWhileRevalidate { .. }
            | CacheOutcome::StaleIfError { .. }
            | CacheOutcome::StaleRateLimited { .. } => "stale",
            CacheOutcome::Miss { .. } => "miss",
            CacheOutcome::Collapsed => "collapsed",
            CacheOutcome::Refresh { .. } => "refresh",
            CacheOutcome::Bypass => "bypass",
            CacheOutcome::Pass(_) => "pass",
        }
    }

    /// The `Cache-Status` value, or none for a response the cache had nothing to do with.
    pub fn cache_status(self) -> Option<HeaderValue> {
        let text = match self {
            CacheOutcome::None => return None,
            CacheOutcome::Hit { ttl } => return Some(hit_status(ttl)),
            CacheOutcome::SharedHit { ttl } => {
                format!("{CACHE_NAME}; hit; ttl={ttl}; detail=shared")
            }
            CacheOutcome::StaleWhileRevalidate { ttl } => {
                format!("{CACHE_NAME}; hit; ttl={ttl}; detail=stale-while-revalidate")
            }
            CacheOutcome::StaleIfError { ttl, upstream } => {
                let fwd_status =
                    upstream.map_or(String::new(), |s| format!("; fwd-status={}", s.as_u16()));
                format!("{CACHE_NAME}; fwd=miss{fwd_status}; ttl={ttl}; detail=stale-if-error")
            }
            CacheOutcome::StaleRateLimited { ttl } => {
                format!("{CACHE_NAME}; fwd=miss; ttl={ttl}; detail=rate-limited")
            }
            // The rest never change: made at compile time, not formatted for each request.
            CacheOutcome::Miss { stored: true } => return fixed!("; fwd=miss; stored"),
            CacheOutcome::Miss { stored: false } => return fixed!("; fwd=miss"),
            CacheOutcome::Collapsed => return fixed!("; fwd=miss; collapsed"),
            CacheOutcome::Refresh { stored: true } => return fixed!("; fwd=request; stored"),
            CacheOutcome::Refresh { stored: false } | CacheOutcome::Bypass => {
                return fixed!("; fwd=request")
            }
            CacheOutcome::Pass(PassReason::TooLarge) => {
                return fixed!("; fwd=bypass; detail=too-large")
            }
            CacheOutcome::Pass(PassReason::Private) => {
                return fixed!("; fwd=bypass; detail=private")
            }
        };
        Some(text_value(text))
    }

    /// Adds the decision to the cache counters, when it is taken: a request whose client hangs
    /// up while it waits still made (or joined) its fetch. Refreshes, bypasses and passes count
    /// as misses: each goes to KooDrive.
    pub fn count(self, metrics: &Metrics) {
        match self {
            CacheOutcome::None => 0,
            CacheOutcome::Hit { .. } | CacheOutcome::SharedHit { .. } => metrics.cache_hits.inc(),
            CacheOutcome::Collapsed => metrics.cache_collapsed.inc(),
            CacheOutcome::StaleWhileRevalidate { .. } => metrics
                .cache_stale_served
                .get_or_create(&ReasonLabels {
                    reason: "stale-while-revalidate",
                })
                .inc(),
            CacheOutcome::StaleIfError { .. } => metrics
                .cache_stale_served
                .get_or_create(&ReasonLabels {
                    reason: "stale-if-error",
                })
                .inc(),
            CacheOutcome::StaleRateLimited { .. } => metrics
                .cache_stale_served
                .get_or_create(&ReasonLabels {
                    reason: "rate-limited",
                })
                .inc(),
            CacheOutcome::Miss { .. }
            | CacheOutcome::Refresh { .. }
            | CacheOutcome::Bypass
            | CacheOutcome::Pass(_) => metrics.cache_misses.inc(),
        };
    }
}

/// Header values that come back on hit after hit (an age or a ttl in seconds), each made the
/// first time it is needed and shared after that. Numbers past the table are made every time.
pub(crate) struct Memo([OnceLock<HeaderValue>; MEMO_LEN]);

const MEMO_LEN: usize = 1024;

impl Memo {
    pub(crate) const fn new() -> Memo {
        Memo([const { OnceLock::new() }; MEMO_LEN])
    }

    pub(crate) fn get(&self, n: u64, make: impl FnOnce(u64) -> HeaderValue) -> HeaderValue {
        match usize::try_from(n).ok().and_then(|i| self.0.get(i)) {
            Some(slot) => slot.get_or_init(|| make(n)).clone(),
            None => make(n),
        }
    }
}

/// `Age` values, shared by every stored page served.
pub(crate) static AGES: Memo = Memo::new();
static HIT_STATUSES: Memo = Memo::new();

/// `Cache-Status` of a fresh hit (its ttl is never negative).
fn hit_status(ttl: i64) -> HeaderValue {
    HIT_STATUSES.get(u64::try_from(ttl).unwrap_or(0), |ttl| {
        text_value(format!("{CACHE_NAME}; hit; ttl={ttl}"))
    })
}

/// A `Cache-Status` value from text the gateway wrote itself (always visible ASCII; were it
/// not, the bare cache name would be said instead).
fn text_value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static(CACHE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made or remembered, in the table or past it, a number's value is the number.
    #[test]
    fn remembered_values_say_their_number() {
        for n in [0u64, 1, 59, 1023, 1024, 99_999] {
            for _ in 0..2 {
                assert_eq!(AGES.get(n, HeaderValue::from), n.to_string().as_str());
                let status = hit_status(i64::try_from(n).unwrap_or_default());
                assert_eq!(status, format!("koodrive-gateway; hit; ttl={n}").as_str());
            }
        }
    }

    #[test]
    fn one_outcome_says_header_label_and_counter() {
        use CacheOutcome::*;
        let cases = [
            (None, Option::None, "none"),
            (Hit { ttl: 5 }, Some("koodrive-gateway; hit; ttl=5"), "hit"),
            (
                SharedHit { ttl: 4 },
                Some("koodrive-gateway; hit; ttl=4; detail=shared"),
                "shared-hit",
            ),
            (
                StaleWhileRevalidate { ttl: -3 },
                Some("koodrive-gateway; hit; ttl=-3; detail=stale-while-revalidate"),
                "stale",
            ),
            (
                StaleIfError {
                    ttl: -9,
                    upstream: Some(StatusCode::BAD_GATEWAY),
                },
                Some("koodrive-gateway; fwd=miss; fwd-status=502; ttl=-9; detail=stale-if-error"),
                "stale",
            ),
            (
                StaleIfError {
                    ttl: -9,
                    upstream: Option::None,
                },
                Some("koodrive-gateway; fwd=miss; ttl=-9; detail=stale-if-error"),
                "stale",
            ),
            (
                StaleRateLimited { ttl: -2 },
                Some("koodrive-gateway; fwd=miss; ttl=-2; detail=rate-limited"),
                "stale",
            ),
            (
                Miss { stored: true },
                Some("koodrive-gateway; fwd=miss; stored"),
                "miss",
            ),
            (
                Miss { stored: false },
                Some("koodrive-gateway; fwd=miss"),
                "miss",
            ),
            (
                Collapsed,
                Some("koodrive-gateway; fwd=miss; collapsed"),
                "collapsed",
            ),
            (
                Refresh { stored: true },
                Some("koodrive-gateway; fwd=request; stored"),
                "refresh",
            ),
            (
                Refresh { stored: false },
                Some("koodrive-gateway; fwd=request"),
                "refresh",
            ),
            (Bypass, Some("koodrive-gateway; fwd=request"), "bypass"),
            (
                Pass(PassReason::TooLarge),
                Some("koodrive-gateway; fwd=bypass; detail=too-large"),
                "pass",
            ),
            (
                Pass(PassReason::Private),
                Some("koodrive-gateway; fwd=bypass; detail=private"),
                "pass",
            ),
        ];
        for (outcome, status, label) in cases {
            let said = outcome.cache_status();
            assert_eq!(
                said.as_ref().map(|v| v.to_str().unwrap_or("?")),
                status,
                "{outcome:?}"
            );
            assert_eq!(outcome.label(), label, "{outcome:?}");
        }
    }

    #[test]
    fn refresh_bypass_and_pass_count_as_misses() {
        let metrics = Metrics::new();
        for outcome in [
            CacheOutcome::Miss { stored: false },
            CacheOutcome::Refresh { stored: false },
            CacheOutcome::Bypass,
            CacheOutcome::Pass(PassReason::Private),
        ] {
            outcome.count(&metrics);
        }
        CacheOutcome::Hit { ttl: 1 }.count(&metrics);
        CacheOutcome::Collapsed.count(&metrics);
        CacheOutcome::None.count(&metrics);
        assert_eq!(metrics.cache_misses.get(), 4);
        assert_eq!(metrics.cache_hits.get(), 1);
        assert_eq!(metrics.cache_collapsed.get(), 1);
    }
}
