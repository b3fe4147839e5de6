//! One exchange with KooDrive: the upstream URI, authentication applied last (so the signature
//! covers exactly what is sent), the `upstream` span, the upstream metrics, and the answer's
//! hop-by-hop headers stripped. Retries and the breaker are [`Upstream::send`]'s.

use http::{header, HeaderMap, Method, Request, Response, Uri, Version};
use tracing::{field::Empty, Instrument};

use super::Upstream;
use crate::auth::Auth;
use crate::body::Body;
use crate::error::{Fault, GatewayError};
use crate::headers::{self, X_TRACEID};
use crate::metrics;
use crate::quota::{Ask, Throttle};
use crate::route::Route;
use crate::telemetry;

/// A request as it goes to KooDrive, before authentication: the client's method, URI and
/// (stripped) headers, and the body's SHA-256 when it was read whole to be signed.
pub struct Outbound<'a> {
    pub route: Route,
    pub method: Method,
    pub uri: &'a Uri,
    pub headers: HeaderMap,
    pub body: Body,
    pub body_sha256: Option<&'a str>,
    /// What it asks of the upstream budget.
    pub ask: Ask,
}

impl Upstream {
    /// Builds the upstream request, injects authentication last, and sends it.
    pub async fn exchange(
        &self,
        auth: &Auth,
        outbound: Outbound<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        // Nothing over the budget (or during KooDrive's cooldown) is sent.
        let granted = self.quota.acquire(outbound.ask, outbound.route).await?;
        if granted.delayed.is_some() {
            tracing::Span::current().record("budget", "delayed");
        }
        let (mut parts, body) = Request::new(outbound.body).into_parts();
        parts.method = outbound.method;
        parts.uri = self.uri(outbound.uri.path_and_query());
        parts.version = Version::HTTP_11;
        parts.headers = outbound.headers;
        auth.apply(
            &parts.method,
            &parts.uri,
            &mut parts.headers,
            &self.host,
            outbound.body_sha256,
            time::OffsetDateTime::now_utc(),
        )?;
        telemetry::inject_context(&mut parts.headers);
        let spend = (outbound.ask, outbound.route);
        self.observed(spend, Request::from_parts(parts, body)).await
    }

    /// The exchange itself, in its own span, counted in the upstream metrics.
    async fn observed(
        &self,
        (ask, route): super::Spend,
        request: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        // One clock read for the deadline (tokio's clock) and the upstream latency.
        let now = tokio::time::Instant::now();
        let started = now.into_std();
        // The JSON log shows an event's innermost span: this one carries the trace id too.
        let trace_id = request
            .headers()
            .get(X_TRACEID)
            .and_then(|v| v.to_str().ok());
        let span = tracing::info_span!(
            "upstream",
            trace_id = trace_id.unwrap_or_default(),
            status = Empty
        );
        // Boxed: the exchange's state (the pool's checkout, hyper's send, the deadline) is
        // kilobytes, and every future that awaits this one would carry it and be copied whole
        // each time it moves (bench/RESULTS.md).
        let result = Box::pin(
            self.send(request, self.deadline_from(now), (ask, route))
                .instrument(span.clone()),
        )
        .await;
        let elapsed = started.elapsed();
        let current = tracing::Span::current();
        current.record("upstream_ms", elapsed.as_millis() as u64);
        let outcome = UpstreamOutcome::of(&result);
        self.series.count(&self.metrics, route, outcome.as_str());
        // KooDrive's latency: a call never made (the breaker open, the client's body failing
        // first) would pull its quantiles toward 0 exactly when KooDrive is slow.
        if outcome.reached_upstream() {
            self.series.observe(route, elapsed.as_secs_f64());
        }
        let mut response = result?;
        span.record("status", response.status().as_u16());
        if response.status() == http::StatusCode::TOO_MANY_REQUESTS {
            self.quota
                .throttled(Throttle::Status429, response.headers());
        }
        current.record("upstream_status", response.status().as_u16());
        // Both framings: hyper read the body by Transfer-Encoding, and a Content-Length kept
        // beside the de-chunked body would frame the answer wrongly (RFC 9112 section 6.3:
        // removed before forwarding).
        if response.headers().contains_key(header::TRANSFER_ENCODING) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        headers::strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

/// How an exchange ended, as the `outcome` label of `upstream_requests_total` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// KooDrive answered: the status class (`2xx` ... `5xx`).
    Answered(&'static str),
    Timeout,
    ConnectError,
    /// The breaker refused the call: KooDrive was never asked.
    CircuitOpen,
    /// The client's body failed, not KooDrive.
    ClientError,
    /// Anything else KooDrive did wrong: a malformed, cut-off or oversized answer.
    ProtocolError,
}

impl UpstreamOutcome {
    pub fn of(result: &Result<Response<Body>, GatewayError>) -> UpstreamOutcome {
        let error = match result {
            Ok(response) => {
                return UpstreamOutcome::Answered(metrics::status_class(response.status().as_u16()))
            }
            Err(error) => error,
        };
        match error {
            GatewayError::UpstreamTimeout(_) => UpstreamOutcome::Timeout,
            GatewayError::UpstreamConnect(_) => UpstreamOutcome::ConnectError,
            GatewayError::CircuitOpen(_) => UpstreamOutcome::CircuitOpen,
            error if error.fault() == Fault::Client => UpstreamOutcome::ClientError,
            _ => UpstreamOutcome::ProtocolError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamOutcome::Answered(class) => class,
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::ConnectError => "connect_error",
            UpstreamOutcome::CircuitOpen => "circuit_open",
            UpstreamOutcome::ClientError => "client_error",
            UpstreamOutcome::ProtocolError => "protocol_error",
        }
    }

    /// Whether the call reached KooDrive, so that its latency says something about KooDrive.
    pub fn reached_upstream(self) -> bool {
        !matches!(
            self,
            UpstreamOutcome::CircuitOpen | UpstreamOutcome::ClientError
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The labels exported at zero from the start are exactly the ones an exchange can end with.
    #[test]
    fn every_outcome_label_is_one_metrics_exports_at_zero() {
        let mut labels: Vec<&str> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| UpstreamOutcome::Answered(class).as_str())
            .to_vec();
        labels.extend(
            [
                UpstreamOutcome::Timeout,
                UpstreamOutcome::ConnectError,
                UpstreamOutcome::ProtocolError,
                UpstreamOutcome::CircuitOpen,
                UpstreamOutcome::ClientError,
            ]
            .map(UpstreamOutcome::as_str),
        );
        for status in [100u16, 200, 302, 404, 503] {
            assert!(labels.contains(&metrics::status_class(status)));
        }
        assert_eq!(labels, metrics::UPSTREAM_OUTCOMES);
        // A new variant does not compile here until it is listed above.
        let _listed = |outcome: UpstreamOutcome| match outcome {
            UpstreamOutcome::Answered(_)
            | UpstreamOutcome::Timeout
            | UpstreamOutcome::ConnectError
            | UpstreamOutcome::ProtocolError
            | UpstreamOutcome::CircuitOpen
            | UpstreamOutcome::ClientError => (),
        };
    }

    #[test]
    fn outcomes_name_whose_failure_it_was() {
        let cases: [(GatewayError, &str, bool); 6] = [
            (
                GatewayError::UpstreamTimeout(Duration::ZERO),
                "timeout",
                true,
            ),
            (
                GatewayError::UpstreamConnect("refused".into()),
                "connect_error",
                true,
            ),
            (
                GatewayError::CircuitOpen(Duration::ZERO),
                "circuit_open",
                false,
            ),
            (
                GatewayError::ClientBody("cut".into()),
                "client_error",
                false,
            ),
            (
                GatewayError::BodyTooLarge { limit: 1 },
                "client_error",
                false,
            ),
            (
                GatewayError::UpstreamProtocol("garbage".into()),
                "protocol_error",
                true,
            ),
        ];
        for (error, label, reached) in cases {
            let outcome = UpstreamOutcome::of(&Err(error));
            assert_eq!(outcome.as_str(), label);
            assert_eq!(outcome.reached_upstream(), reached, "{label}");
        }
        let mut answered = Response::new(crate::body::empty());
        *answered.status_mut() = http::StatusCode::BAD_GATEWAY;
        assert_eq!(UpstreamOutcome::of(&Ok(answered)).as_str(), "5xx");
    }
}
