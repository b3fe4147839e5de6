//! One error type for everything the gateway can refuse or fail at, and the ONE place where an
//! error becomes an HTTP response: a JSON body `{"code", "msg"}` with a status, marked with the
//! `koodrive-gateway-error` header so callers can tell it from KooDrive's own answers.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body, BoxError};
use crate::headers::GATEWAY_ERROR;

/// What a 405 says the gateway forwards: every standard method but `CONNECT` and `TRACE`.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Whose failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself is malformed or not forwardable: refused before any upstream work.
    Request,
    /// The client's body failed on the way (cut off, too large, too slow).
    Client,
    /// KooDrive failed or is being protected from (the breaker).
    Upstream,
    /// The gateway's own limits or a bug.
    Gateway,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("X-Traceid must be 1 to 128 visible ASCII characters")]
    BadTraceId,
    #[error("invalid query parameter {param}={value:?}: {allowed}")]
    BadQuery {
        param: String,
        value: String,
        allowed: &'static str,
    },
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// An HTTP/2 field value with spaces or tabs around it: malformed (RFC 9113 section 8.2.1).
    /// Refused rather than trimmed, so the cache key and KooDrive never read it two ways.
    #[error("malformed request: the value of header {0} starts or ends with a space or tab")]
    PaddedHeader(http::HeaderName),
    /// `CONNECT` (a tunnel) and `TRACE` (an echo of the request, with the credentials the gateway
    /// injects): neither has a use in KooDrive's API, and neither is forwarded.
    #[error("method {0} is not forwarded to KooDrive")]
    MethodNotAllowed(http::Method),
    #[error("request body exceeds the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("reading the request body failed")]
    ClientBody(#[source] BoxError),
    /// The client stopped sending its (streamed) body and KooDrive, waiting for the rest, could
    /// not answer within `upstream.timeout`: the client's fault, as nginx's 408 for a body that
    /// stops arriving.
    #[error("the request body did not arrive within {0:?}")]
    ClientBodyTimeout(Duration),
    #[error("KooDrive is unreachable")]
    UpstreamConnect(#[source] BoxError),
    #[error("KooDrive did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    #[error("KooDrive's response was malformed or cut off")]
    UpstreamProtocol(#[source] BoxError),
    #[error("KooDrive's response body is too large to normalize")]
    UpstreamBodyTooLarge,
    /// A task-list page over `normalize.max_body`: it cannot be shared or stored, so each request
    /// fetches it on its own and streams it through (the flight's answer, never a client's).
    #[error("KooDrive's response body is too large to share")]
    PageTooLarge,
    #[error("KooDrive is failing; the gateway calls it again within {}s", .0.as_secs().max(1))]
    CircuitOpen(Duration),
    /// Over the upstream budget, or in a cooldown KooDrive asked for: budget is due in `.0`.
    #[error("the gateway's budget of calls to KooDrive is spent; try again in {}s", retry_seconds(*.0))]
    RateLimited(Duration),
    #[error("the gateway is at its limit of {0} requests in flight")]
    Overloaded(usize),
    /// Buffered bodies hold all of `server.max_buffered_bytes`: this one cannot be read now.
    #[error("the gateway's {0}-byte budget for buffered bodies is in use; try again")]
    BufferBudget(u64),
    /// A body larger than all of `server.max_buffered_bytes`: it could never be read whole.
    #[error("request body of {len} bytes exceeds the {budget}-byte budget for buffered bodies")]
    OverBudget { len: u64, budget: u64 },
    #[error("internal gateway error")]
    Internal(#[source] BoxError),
    /// The failure of a flight this request shared with others.
    #[error(transparent)]
    Collapsed(std::sync::Arc<GatewayError>),
}

/// A wait as whole seconds for `Retry-After`: rounded up, at least 1.
fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadTraceId | BadQuery { .. } | BadRequest(_) | PaddedHeader(_) | ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyTooLarge { .. } | OverBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamConnect(_) | UpstreamProtocol(_) | UpstreamBodyTooLarge | PageTooLarge => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Overloaded(_) | BufferBudget(_) | CircuitOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Collapsed(inner) => inner.status(),
        }
    }

    /// The gateway's own error code: never a KooDrive number.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            BadTraceId => "GATEWAY_BAD_TRACEID",
            BadQuery { .. } => "GATEWAY_BAD_QUERY",
            BadRequest(_) | PaddedHeader(_) => "GATEWAY_BAD_REQUEST",
            MethodNotAllowed(_) => "GATEWAY_METHOD_NOT_ALLOWED",
            BodyTooLarge { .. } | OverBudget { .. } => "GATEWAY_BODY_TOO_LARGE",
            ClientBody(_) => "GATEWAY_CLIENT_BODY",
            ClientBodyTimeout(_) => "GATEWAY_CLIENT_BODY_TIMEOUT",
            UpstreamConnect(_) => "GATEWAY_UPSTREAM_UNREACHABLE",
            UpstreamTimeout(_) => "GATEWAY_UPSTREAM_TIMEOUT",
            UpstreamProtocol(_) => "GATEWAY_UPSTREAM_PROTOCOL",
            UpstreamBodyTooLarge | PageTooLarge => "GATEWAY_UPSTREAM_BODY_TOO_LARGE",
            Overloaded(_) | BufferBudget(_) => "GATEWAY_OVERLOADED",
            CircuitOpen(_) => "GATEWAY_UPSTREAM_CIRCUIT_OPEN",
            RateLimited(_) => "GATEWAY_RATE_LIMITED",
            Internal(_) => "GATEWAY_INTERNAL",
            Collapsed(inner) => inner.code(),
        }
    }

    /// True when KooDrive (not the client) failed: the stale-if-error condition.
    pub fn is_upstream_failure(&self) -> bool {
        self.fault() == Fault::Upstream
    }

    /// True when the client (its body) failed, not KooDrive: never counted against KooDrive.
    pub fn is_client_fault(&self) -> bool {
        self.fault() == Fault::Client
    }

    /// Whose failure this is: what the upstream metrics and the breaker go by.
    pub fn fault(&self) -> Fault {
        use GatewayError::*;
        match self {
            Collapsed(inner) => inner.fault(),
            BadTraceId
            | BadQuery { .. }
            | BadRequest(_)
            | PaddedHeader(_)
            | MethodNotAllowed(_) => Fault::Request,
            ClientBody(_) | ClientBodyTimeout(_) | BodyTooLarge { .. } | OverBudget { .. } => {
                Fault::Client
            }
            UpstreamConnect(_) | UpstreamTimeout(_) | UpstreamProtocol(_)
            | UpstreamBodyTooLarge | CircuitOpen(_) => Fault::Upstream,
            PageTooLarge | Overloaded(_) | BufferBudget(_) | RateLimited(_) | Internal(_) => {
                Fault::Gateway
            }
        }
    }

    /// True when the upstream budget (or KooDrive's cooldown) held the request back.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            GatewayError::Collapsed(inner) => inner.is_rate_limited(),
            other => matches!(other, GatewayError::RateLimited(_)),
        }
    }

    /// True for the flight answer that sends every request to fetch and stream on its own.
    pub fn is_page_too_large(&self) -> bool {
        match self {
            GatewayError::Collapsed(inner) => inner.is_page_too_large(),
            other => matches!(other, GatewayError::PageTooLarge),
        }
    }

    pub fn to_response(&self) -> Response<Body> {
        let json = serde_json::json!({ "code": self.code(), "msg": self.to_string() });
        let mut response = Response::new(body::full(json.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(GATEWAY_ERROR, HeaderValue::from_static(self.code()));
        // A collapsed waiter's error carries the leader's headers too (`Retry-After` above all).
        let mut error = self;
        while let GatewayError::Collapsed(inner) = error {
            error = inner;
        }
        match error {
            GatewayError::Overloaded(_) | GatewayError::BufferBudget(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            }
            // The rest of the body is not waited for: the connection cannot carry another request.
            GatewayError::ClientBodyTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            GatewayError::RateLimited(left) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_seconds(*left)));
            }
            GatewayError::CircuitOpen(left) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(left.as_secs().max(1)),
                );
            }
            _ => {}
        }
        response
    }
}

/// Displays an error with its whole source chain, for the one log line per failed request.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_and_code() {
        let io = || -> BoxError { Box::new(std::io::Error::other("x")) };
        let table: Vec<(GatewayError, u16, &str)> = vec![
            (GatewayError::BadTraceId, 400, "GATEWAY_BAD_TRACEID"),
            (
                GatewayError::BadQuery {
                    param: "pageSize".into(),
                    value: "0".into(),
                    allowed: "1..=100",
                },
                400,
                "GATEWAY_BAD_QUERY",
            ),
            (GatewayError::BadRequest("x"), 400, "GATEWAY_BAD_REQUEST"),
            (
                GatewayError::MethodNotAllowed(http::Method::TRACE),
                405,
                "GATEWAY_METHOD_NOT_ALLOWED",
            ),
            (GatewayError::ClientBody(io()), 400, "GATEWAY_CLIENT_BODY"),
            (
                GatewayError::ClientBodyTimeout(Duration::from_secs(1)),
                408,
                "GATEWAY_CLIENT_BODY_TIMEOUT",
            ),
            (
                GatewayError::BodyTooLarge { limit: 1 },
                413,
                "GATEWAY_BODY_TOO_LARGE",
            ),
            (
                GatewayError::UpstreamConnect(io()),
                502,
                "GATEWAY_UPSTREAM_UNREACHABLE",
            ),
            (
                GatewayError::UpstreamProtocol(io()),
                502,
                "GATEWAY_UPSTREAM_PROTOCOL",
            ),
            (
                GatewayError::UpstreamBodyTooLarge,
                502,
                "GATEWAY_UPSTREAM_BODY_TOO_LARGE",
            ),
            (
                GatewayError::UpstreamTimeout(Duration::from_secs(1)),
                504,
                "GATEWAY_UPSTREAM_TIMEOUT",
            ),
            (GatewayError::Overloaded(1), 503, "GATEWAY_OVERLOADED"),
            (GatewayError::BufferBudget(1), 503, "GATEWAY_OVERLOADED"),
            (
                GatewayError::OverBudget { len: 2, budget: 1 },
                413,
                "GATEWAY_BODY_TOO_LARGE",
            ),
            (
                GatewayError::PaddedHeader(header::ACCEPT),
                400,
                "GATEWAY_BAD_REQUEST",
            ),
            (
                GatewayError::CircuitOpen(Duration::from_secs(3)),
                503,
                "GATEWAY_UPSTREAM_CIRCUIT_OPEN",
            ),
            (
                GatewayError::RateLimited(Duration::from_millis(1)),
                429,
                "GATEWAY_RATE_LIMITED",
            ),
            (GatewayError::Internal(io()), 500, "GATEWAY_INTERNAL"),
        ];
        for (error, status, code) in table {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(response.headers()[GATEWAY_ERROR], code);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn overloaded_says_when_to_retry() {
        let response = GatewayError::Overloaded(8).to_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = GatewayError::BufferBudget(8).to_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn rate_limited_says_when_budget_is_due_in_whole_seconds() {
        for (wait, seconds) in [(1, "1"), (1_000, "1"), (1_001, "2"), (4_500, "5")] {
            let error = GatewayError::RateLimited(Duration::from_millis(wait));
            let collapsed = GatewayError::Collapsed(std::sync::Arc::new(error));
            let response = collapsed.to_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], seconds, "{wait}");
        }
    }

    #[test]
    fn method_not_allowed_lists_what_is_forwarded() {
        let response = GatewayError::MethodNotAllowed(http::Method::CONNECT).to_response();
        assert_eq!(response.headers()[header::ALLOW], ALLOWED_METHODS);
        let allow = ALLOWED_METHODS;
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        assert!(
            !allow.contains("CONNECT") && !allow.contains("TRACE"),
            "{allow}"
        );
    }
}
