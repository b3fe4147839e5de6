//! The observe layer around the request handler: the request span, the one access event and the
//! request metrics, all recorded from the handler's typed outcome, and the one log line of a
//! failed request.

use std::time::Instant;

use http::{HeaderValue, Request};
use tracing::field::Empty;

use crate::cache::CacheOutcome;
use crate::error::{ErrorChain, GatewayError};
use crate::metrics::{self, Metrics, RequestLabels};
use crate::route::Route;
use crate::telemetry;

/// nginx's status for a request whose client closed the connection before it was answered.
const CLIENT_CLOSED: u16 = 499;

/// The request span: the trace id, method, path (never the query) and route; what KooDrive
/// answered is recorded into it by the upstream exchange.
pub fn request_span<B>(
    trace_id: &HeaderValue,
    request: &Request<B>,
    route: Route,
) -> tracing::Span {
    tracing::info_span!(
        "request",
        trace_id = trace_id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
        route = route.name(),
        upstream_status = Empty,
        upstream_ms = Empty,
        budget = Empty,
    )
}

/// The span of a stale page's background refresh: its own, linked to the request's, which ends
/// with its answer rather than with the refresh (which may take up to `upstream.timeout`).
pub fn refresh_span(trace_id: &HeaderValue) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "refresh",
        trace_id = trace_id.to_str().unwrap_or_default(),
        upstream_status = Empty,
        upstream_ms = Empty,
        budget = Empty,
    );
    span.follows_from(tracing::Span::current());
    span
}

/// Logs a request's error once, inside its span: a client's own error at debug (its access event
/// already says so, with the code), the gateway's or KooDrive's as a warning.
pub fn failed(error: &GatewayError, trace_id: &HeaderValue) {
    if error.status().is_client_error() {
        tracing::debug!(
            code = error.code(),
            error = %ErrorChain(error),
            "request refused"
        );
    } else {
        // The trace id is on the event too: with a warn-only filter the span is off (a span at
        // WARN would cost every request, cache hits included).
        tracing::warn!(
            trace_id = trace_id.to_str().unwrap_or_default(),
            code = error.code(),
            error = %ErrorChain(error),
            "request failed"
        );
    }
}

/// A request's access event and its count in the metrics, recorded once: when it is answered,
/// or, if its client hangs up first (hyper then drops the request's future, and this with it),
/// as a [`CLIENT_CLOSED`] at that moment. So every request leaves one access event, as with
/// nginx, including the ones nobody was left to answer.
pub struct Observe<'a> {
    metrics: &'a Metrics,
    route: Route,
    method: metrics::Method,
    started: Instant,
    /// Not recorded yet.
    pending: bool,
}

impl<'a> Observe<'a> {
    pub fn start(
        metrics: &'a Metrics,
        route: Route,
        method: metrics::Method,
        started: Instant,
    ) -> Observe<'a> {
        Observe {
            metrics,
            route,
            method,
            started,
            pending: true,
        }
    }

    /// `code`: the gateway's error code, when the gateway made the answer as an error.
    pub fn answered(mut self, status: u16, cache: CacheOutcome, code: Option<&'static str>) {
        self.pending = false;
        self.record(status, cache.label(), code);
    }

    // Inlined: on the cache-hit path, a call here costs more than the body (bench/RESULTS.md).
    #[inline(always)]
    fn record(&self, status: u16, cache: &'static str, code: Option<&'static str>) {
        let elapsed = self.started.elapsed();
        let labels = RequestLabels {
            route: self.route.name(),
            method: self.method,
            status_class: metrics::status_class(status),
            cache,
        };
        self.metrics
            .request_answered(&labels, elapsed.as_secs_f64());
        // Status and cache go on the event, not into the span: recording into a span makes the
        // formatter rebuild its fields, a cost every cache hit would pay.
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        match code {
            None => tracing::info!(
                target: telemetry::ACCESS_TARGET,
                status,
                cache,
                duration_ms,
                "request"
            ),
            Some(code) => tracing::info!(
                target: telemetry::ACCESS_TARGET,
                status,
                cache,
                code,
                duration_ms,
                "request"
            ),
        }
    }
}

impl Drop for Observe<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.record(CLIENT_CLOSED, CacheOutcome::None.label(), None);
        }
    }
}
