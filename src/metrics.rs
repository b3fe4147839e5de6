//! Prometheus metrics, `koodrive_gateway_` prefixed, with bounded labels only (route name,
//! method, status class, cache status, outcome): never raw paths, queries or user ids.
//! Counters and histograms are atomics; the label families are created once per label set.
//!
//! Every family with labels exports its known label sets at 0 from the start (Prometheus's
//! convention): a series born at its first event has no earlier sample, so `rate()` and
//! `increase()` miss that event, and a dashboard or alert on a family not yet seen shows nothing
//! instead of 0.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::route::Route;

pub mod fleet;
mod quota;
mod register;

pub use quota::{BudgetLabels, QuotaMetrics, PRIORITIES, THROTTLES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: Method,
    pub status_class: &'static str,
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub route: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// A config key, for conditions tied to one (`auth.app_secret_file`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: &'static str,
}

/// Which listener a connection came to: `proxy` or `admin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// HTTP methods as a bounded label: anything unusual is `other`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum Method {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    /// Encoded as the variant's name: lower case, as every documented label value is.
    #[allow(non_camel_case_types)]
    other,
}

impl From<&http::Method> for Method {
    fn from(method: &http::Method) -> Method {
        match *method {
            http::Method::GET => Method::GET,
            http::Method::HEAD => Method::HEAD,
            http::Method::POST => Method::POST,
            http::Method::PUT => Method::PUT,
            http::Method::PATCH => Method::PATCH,
            http::Method::DELETE => Method::DELETE,
            http::Method::OPTIONS => Method::OPTIONS,
            _ => Method::other,
        }
    }
}

/// The outcomes of a call to KooDrive, as `upstream_requests_total` labels them.
pub const UPSTREAM_OUTCOMES: [&str; 10] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "connect_error",
    "protocol_error",
    "circuit_open",
    "client_error",
];

/// The `requests_total` series exported from the start: for the task list, each way a page is
/// served (2xx) and its errors (4xx, 5xx); for the other routes, their usual method's status
/// classes. Rarer combinations (`HEAD`, `no-cache`, a KooDrive error passed through on a miss)
/// appear with their first request.
fn known_requests() -> impl Iterator<Item = RequestLabels> {
    let task_list = [
        ("2xx", "hit"),
        ("2xx", "stale"),
        ("2xx", "miss"),
        ("2xx", "collapsed"),
        ("4xx", "none"),
        ("5xx", "none"),
    ]
    .map(|(status_class, cache)| RequestLabels {
        route: Route::TaskList.name(),
        method: Method::GET,
        status_class,
        cache,
    });
    let others = [
        (Route::TaskRead, Method::GET),
        (Route::TaskWrite, Method::POST),
        (Route::Other, Method::GET),
    ]
    .into_iter()
    .flat_map(|(route, method)| {
        ["2xx", "4xx", "5xx"].map(|status_class| RequestLabels {
            route: route.name(),
            method,
            status_class,
            cache: "none",
        })
    });
    task_list.into_iter().chain(others)
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn latency_histogram() -> Histogram {
    // 100 us .. ~26 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every `cache` label a request is counted under ([`crate::cache::CacheOutcome::label`]).
pub const CACHE_LABELS: [&str; 9] = [
    "none",
    "hit",
    "shared-hit",
    "stale",
    "miss",
    "collapsed",
    "refresh",
    "bypass",
    "pass",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The variants of [`Method`].
const METHODS: usize = 8;

/// `requests_total`'s series, each resolved on its first use, and `request_duration_seconds`'s,
/// resolved at the start: a request counts itself through an index, where the families would
/// hash its labels (SipHash over four of them) under their lock on every request.
/// The handles share their values with the families, which export them.
struct Resolved {
    /// By route (in the order of [`Route::ALL`]), method, status class and cache label.
    requests: Box<[OnceLock<Counter>]>,
    durations: [Histogram; Route::ALL.len()],
}

impl Resolved {
    fn new(request_duration: &Family<RouteLabels, Histogram>) -> Resolved {
        let series = Route::ALL.len() * METHODS * STATUS_CLASSES.len() * CACHE_LABELS.len();
        Resolved {
            requests: (0..series).map(|_| OnceLock::new()).collect(),
            durations: Route::ALL.map(|route| {
                request_duration
                    .get_or_create(&RouteLabels {
                        route: route.name(),
                    })
                    .clone()
            }),
        }
    }

    /// Where a label set's series is kept; `None` for a label outside the known ones.
    fn index(labels: &RequestLabels) -> Option<(usize, usize)> {
        let route = Route::ALL.iter().position(|r| r.name() == labels.route)?;
        let class = STATUS_CLASSES
            .iter()
            .position(|&c| c == labels.status_class)?;
        let cache = CACHE_LABELS.iter().position(|&c| c == labels.cache)?;
        let method = labels.method as usize;
        let at = ((route * METHODS + method) * STATUS_CLASSES.len() + class) * CACHE_LABELS.len()
            + cache;
        Some((route, at))
    }
}

/// The labels of the commonest request, a task-list cache hit.
const HIT: RequestLabels = RequestLabels {
    route: "task_list",
    method: Method::GET,
    status_class: "2xx",
    cache: "hit",
};

pub struct Metrics {
    registry: Registry,
    /// A cache hit's series, resolved once: a hit neither hashes its labels nor takes the
    /// families' locks.
    hit_requests: Counter,
    hit_duration: Histogram,
    /// Every other request's series, resolved.
    resolved: Resolved,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_duration: Family<RouteLabels, Histogram>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_collapsed: Counter,
    pub cache_stale_served: Family<ReasonLabels, Counter>,
    pub cache_invalidations: Family<ReasonLabels, Counter>,
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    pub normalize_fallbacks: Family<ReasonLabels, Counter>,
    pub normalize_mismatches: Counter,
    pub in_flight: Gauge,
    pub breaker_open: Gauge,
    pub breaker_transitions: Family<ReasonLabels, Counter>,
    /// Exchanges sent to KooDrive a second time, on a fresh connection.
    pub upstream_retries: Counter,
    /// 1 while a watched secret file cannot be read (the last good value is still used).
    pub secret_file_unreadable: Family<KeyLabels, Gauge>,
    /// Requests refused with `GATEWAY_OVERLOADED` (over `server.max_in_flight`).
    pub shed: Counter,
    /// Client connections open, per listener.
    pub connections: Family<ListenerLabels, Gauge>,
    /// Client connections closed at once because their listener was at its cap.
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// Bytes held in buffered bodies (`server.max_buffered_bytes` bounds it).
    pub buffered_bytes: Gauge,
    /// The upstream budget and KooDrive's throttling.
    pub quota: QuotaMetrics,
    /// Fleet mode's series (`fleet_*`).
    pub fleet: fleet::FleetMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("koodrive_gateway");
        let requests: Family<RequestLabels, Counter> = Family::default();
        let request_duration: Family<RouteLabels, Histogram> =
            Family::new_with_constructor(latency_histogram);
        let hit_requests = requests.get_or_create(&HIT).clone();
        let hit_duration = request_duration
            .get_or_create(&RouteLabels { route: HIT.route })
            .clone();
        let resolved = Resolved::new(&request_duration);
        let metrics = Metrics {
            hit_requests,
            hit_duration,
            resolved,
            requests,
            request_duration,
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_collapsed: Counter::default(),
            cache_stale_served: Family::default(),
            cache_invalidations: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            normalize_fallbacks: Family::default(),
            normalize_mismatches: Counter::default(),
            in_flight: Gauge::default(),
            breaker_open: Gauge::default(),
            breaker_transitions: Family::default(),
            upstream_retries: Counter::default(),
            secret_file_unreadable: Family::default(),
            shed: Counter::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            buffered_bytes: Gauge::default(),
            quota: QuotaMetrics::default(),
            fleet: fleet::FleetMetrics::default(),
            registry: Registry::default(),
        };
        register::zero_known_series(&metrics);
        register::all(&metrics, &mut registry);
        metrics.quota.zero_known_series();
        metrics.quota.register(&mut registry);
        metrics.fleet.zero_known_series();
        metrics.fleet.register(&mut registry);
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build_info);
        Arc::new(Metrics {
            registry,
            ..metrics
        })
    }

    /// Counts one answered request and how long it took.
    pub fn request_answered(&self, labels: &RequestLabels, seconds: f64) {
        if *labels == HIT {
            self.hit_requests.inc();
            self.hit_duration.observe(seconds);
            return;
        }
        let resolved = Resolved::index(labels).and_then(|(route, at)| {
            let counter = self.resolved.requests.get(at)?;
            Some((counter, self.resolved.durations.get(route)?))
        });
        match resolved {
            Some((counter, duration)) => {
                counter
                    .get_or_init(|| self.requests.get_or_create(labels).clone())
                    .inc();
                duration.observe(seconds);
            }
            None => {
                self.requests.get_or_create(labels).inc();
                self.request_duration
                    .get_or_create(&RouteLabels {
                        route: labels.route,
                    })
                    .observe(seconds);
            }
        }
    }

    /// The registry in Prometheus/OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_prefixed_and_labelled() {
        let metrics = Metrics::new();
        let hit = RequestLabels {
            route: "task_list",
            method: Method::GET,
            status_class: status_class(200),
            cache: "hit",
        };
        // A hit goes through the resolved handles, a miss through the families: one series each.
        metrics.request_answered(&hit, 0.001);
        metrics.request_answered(&hit, 0.001);
        metrics.request_answered(
            &RequestLabels {
                cache: "miss",
                ..hit
            },
            0.002,
        );
        metrics.cache_hits.inc();
        let text = metrics.encode();
        assert!(text.contains(
            r#"koodrive_gateway_requests_total{route="task_list",method="GET",status_class="2xx",cache="hit"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"koodrive_gateway_requests_total{route="task_list",method="GET",status_class="2xx",cache="miss"} 1"#
        ), "{text}");
        assert!(
            text.contains(
                r#"koodrive_gateway_request_duration_seconds_count{route="task_list"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains("koodrive_gateway_cache_hits_total 1"));
        assert!(text.contains(r#"koodrive_gateway_build_info{version=""#));
        assert!(
            text.contains("# TYPE koodrive_gateway_request_duration_seconds histogram"),
            "{text}"
        );
    }

    /// Every label set counts into its own series, through the resolved handles or (a label outside
    /// the known ones) the families, and each shows in the exposition once with its own count.
    #[test]
    fn resolved_series_count_each_label_set_apart() {
        let metrics = Metrics::new();
        let mut sets = Vec::new();
        for route in Route::ALL.map(Route::name) {
            for method in [Method::GET, Method::POST, Method::other] {
                for status_class in STATUS_CLASSES {
                    for cache in CACHE_LABELS.iter().copied().chain(["unknown"]) {
                        sets.push(RequestLabels {
                            route,
                            method,
                            status_class,
                            cache,
                        });
                    }
                }
            }
        }
        // Each set counted a different number of times: 1, 2, 3, ...
        for (n, labels) in sets.iter().enumerate() {
            for _ in 0..=n {
                metrics.request_answered(labels, 0.001);
            }
        }
        let text = metrics.encode();
        for (n, labels) in sets.iter().enumerate() {
            let method = format!("{:?}", labels.method);
            let series = format!(
                r#"koodrive_gateway_requests_total{{route="{}",method="{method}",status_class="{}",cache="{}"}} {}"#,
                labels.route,
                labels.status_class,
                labels.cache,
                n + 1
            );
            assert_eq!(text.matches(&series).count(), 1, "{series}");
        }
        let per_route = sets.len() / Route::ALL.len();
        for (r, route) in Route::ALL.map(Route::name).into_iter().enumerate() {
            let counted: usize = (r * per_route + 1..=(r + 1) * per_route).sum();
            let series = format!(
                r#"koodrive_gateway_request_duration_seconds_count{{route="{route}"}} {counted}"#
            );
            assert!(text.contains(&series), "{series}");
        }
    }

    /// The resolved table has room for every method and every cache label a request can have.
    #[test]
    fn the_resolved_table_knows_every_method_and_cache_label() {
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::other,
        ];
        assert_eq!(methods.len(), METHODS);
        for (i, method) in methods.into_iter().enumerate() {
            assert_eq!(method as usize, i);
            // A new variant does not compile here until it is listed above.
            match method {
                Method::GET
                | Method::HEAD
                | Method::POST
                | Method::PUT
                | Method::PATCH
                | Method::DELETE
                | Method::OPTIONS
                | Method::other => {}
            }
        }
        use crate::cache::{CacheOutcome, PassReason};
        let outcomes = [
            CacheOutcome::None,
            CacheOutcome::Hit { ttl: 1 },
            CacheOutcome::SharedHit { ttl: 1 },
            CacheOutcome::StaleWhileRevalidate { ttl: 1 },
            CacheOutcome::Miss { stored: true },
            CacheOutcome::Collapsed,
            CacheOutcome::Refresh { stored: true },
            CacheOutcome::Bypass,
            CacheOutcome::Pass(PassReason::TooLarge),
        ];
        for outcome in outcomes {
            assert!(CACHE_LABELS.contains(&outcome.label()), "{outcome:?}");
        }
    }

    #[test]
    fn known_series_exist_at_zero_from_the_start() {
        let text = Metrics::new().encode();
        for route in Route::ALL.map(Route::name) {
            for outcome in UPSTREAM_OUTCOMES {
                let series = format!(
                    r#"koodrive_gateway_upstream_requests_total{{route="{route}",outcome="{outcome}"}} 0"#
                );
                assert!(text.contains(&series), "{series} in {text}");
            }
            let count =
                format!(r#"koodrive_gateway_upstream_duration_seconds_count{{route="{route}"}} 0"#);
            assert!(text.contains(&count), "{count}");
        }
        for labels in known_requests() {
            let series = format!(
                r#"koodrive_gateway_requests_total{{route="{}",method="{:?}",status_class="{}",cache="{}"}} 0"#,
                labels.route, labels.method, labels.status_class, labels.cache
            );
            assert!(text.contains(&series), "{series}");
        }
        assert!(text.contains("koodrive_gateway_shed_total 0"), "{text}");
    }

    #[test]
    fn unusual_methods_are_one_label() {
        let m: Method = (&http::Method::from_bytes(b"PURGE").unwrap_or(http::Method::GET)).into();
        assert_eq!(m, Method::other);
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(404), "4xx");
    }
}
