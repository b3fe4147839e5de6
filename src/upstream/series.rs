//! The upstream metric series, resolved once per route and outcome when the client is built: an
//! exchange then counts itself through an index instead of hashing its labels into a `Family`
//! (SipHash and a read lock per series per request). The handles share their values with the
//! families, which export them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{Metrics, RouteLabels, UpstreamLabels, UPSTREAM_OUTCOMES};
use crate::route::Route;

pub(super) struct Series {
    /// In the order of [`Route::ALL`].
    by_route: [RouteSeries; Route::ALL.len()],
}

struct RouteSeries {
    /// `upstream_requests_total`, in the order of [`UPSTREAM_OUTCOMES`].
    requests: [Counter; UPSTREAM_OUTCOMES.len()],
    /// `upstream_duration_seconds`.
    duration: Histogram,
}

impl Series {
    pub(super) fn new(metrics: &Metrics) -> Series {
        Series {
            by_route: Route::ALL.map(|route| {
                let route = route.name();
                RouteSeries {
                    requests: UPSTREAM_OUTCOMES.map(|outcome| {
                        metrics
                            .upstream_requests
                            .get_or_create(&UpstreamLabels { route, outcome })
                            .clone()
                    }),
                    duration: metrics
                        .upstream_duration
                        .get_or_create(&RouteLabels { route })
                        .clone(),
                }
            }),
        }
    }

    fn route(&self, route: Route) -> Option<&RouteSeries> {
        let at = Route::ALL.iter().position(|&r| r == route)?;
        self.by_route.get(at)
    }

    /// Counts one exchange of `route` that ended as `outcome`; a label outside the known ones
    /// (none is: a test holds them equal) goes through the family.
    pub(super) fn count(&self, metrics: &Metrics, route: Route, outcome: &'static str) {
        let at = UPSTREAM_OUTCOMES.iter().position(|&o| o == outcome);
        match (self.route(route), at) {
            (Some(series), Some(at)) => {
                if let Some(counter) = series.requests.get(at) {
                    counter.inc();
                }
            }
            _ => {
                metrics
                    .upstream_requests
                    .get_or_create(&UpstreamLabels {
                        route: route.name(),
                        outcome,
                    })
                    .inc();
            }
        }
    }

    /// Records how long KooDrive took for one exchange of `route`.
    pub(super) fn observe(&self, route: Route, seconds: f64) {
        if let Some(series) = self.route(route) {
            series.duration.observe(seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes through a handle is what the exported families show, for every series.
    #[test]
    fn handles_count_into_the_exported_series() {
        let metrics = Metrics::new();
        let series = Series::new(&metrics);
        for (n, route) in Route::ALL.into_iter().enumerate() {
            for outcome in UPSTREAM_OUTCOMES {
                for _ in 0..=n {
                    series.count(&metrics, route, outcome);
                }
                let labels = UpstreamLabels {
                    route: route.name(),
                    outcome,
                };
                let counted = metrics.upstream_requests.get_or_create(&labels).get();
                assert_eq!(counted, n as u64 + 1, "{labels:?}");
            }
            series.observe(route, 0.25);
        }
        let text = metrics.encode();
        for route in Route::ALL.map(Route::name) {
            let sum =
                format!("koodrive_gateway_upstream_duration_seconds_sum{{route=\"{route}\"}} 0.25");
            assert!(text.contains(&sum), "{route}: {text}");
        }
    }
}
