//! The upstream client: HTTP/1.1 keep-alive connections to KooDrive over rustls (with
//! certificate verification) or plain http, from the gateway's own pool ([`pool`]), bounded by
//! the connect timeout and by one deadline that covers the whole exchange, body included.

mod breaker;
mod deadline;
pub mod exchange;
mod heard;
mod pool;
mod series;
mod waiting;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body::Body as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::{Instant, Sleep};

use crate::body::{self, Body};
use crate::body::{BoxError, ClientBodyError};
use crate::config::{ConfigError, UpstreamConfig};
use crate::error::{ErrorChain, GatewayError};
use crate::headers;
use crate::metrics::Metrics;
use crate::quota::{Ask, Quota};
use crate::tls::tls_config;
use breaker::Breaker;
use pool::{Pool, Returning, SendError};
use series::Series;

pub use crate::tls::TlsSetupError;
pub use deadline::{Deadline, DeadlineElapsed};

/// What an exchange spends budget as: a retry asks for its own token the same way.
pub type Spend = (Ask, crate::route::Route);

/// Connections that say whether anything came back since the request went out (for retries).
type Connector = heard::Listening<HttpsConnector<HttpConnector>>;

pub struct Upstream {
    pool: Pool,
    timeout: Duration,
    connect_timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
    series: Series,
    /// The `Host` the signature covers (`upstream.host`).
    host: http::HeaderValue,
    /// The budget every exchange asks first, and KooDrive's throttling cooldown.
    quota: Quota,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Result<Upstream, TlsSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector = heard::Listening(https, config.connect_timeout);
        Ok(Upstream {
            // A bounded read buffer per upstream connection (hyper's default grows to about
            // 400 KiB): part of the worst-case memory (README).
            pool: Pool::new(
                connector,
                (config.scheme.clone(), config.authority.clone()),
                config.pool_idle_timeout,
                crate::config::memory::IO_BUFFER,
            ),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            breaker: Arc::new(Breaker::new(
                config.breaker_failures,
                config.breaker_cooldown,
                Arc::clone(&metrics),
            )),
            quota: Quota::new(
                config.rate_limit,
                config.throttle_cooldown,
                Arc::clone(&metrics),
            ),
            series: Series::new(&metrics),
            metrics,
            host: config.host.clone(),
        })
    }

    /// The upstream URI for a client request's path and query: origin-form, as HTTP/1.1 sends
    /// it (the connection is KooDrive's, the `Host` header says whose). From the part already
    /// parsed (its clone shares its bytes), not from its text parsed again.
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        Uri::from(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )
    }

    /// When an exchange that started at `started` must be over.
    pub fn deadline_from(&self, started: Instant) -> Instant {
        started + self.timeout
    }

    /// Sends a request through the circuit breaker. A bodiless GET or HEAD that failed to
    /// connect or was reset before any response byte is retried once, on a fresh connection,
    /// within the same deadline; nothing else is ever retried. The response body errors out if
    /// it is still streaming at `deadline`, and its end (or error) is the breaker's outcome.
    pub async fn send(
        &self,
        request: Request<Body>,
        deadline: Instant,
        spend: Spend,
    ) -> Result<Response<Body>, GatewayError> {
        let permit = self
            .breaker
            .admit()
            .map_err(|open| GatewayError::CircuitOpen(open.0))?;
        let replay = replayable(&request).then(|| {
            let mut copy = Request::new(());
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.version_mut() = request.version();
            *copy.headers_mut() = request.headers().clone();
            copy
        });
        // A body still to come may stall on its sender, the client: watched, to tell whose
        // fault a timeout is. (A bodiless request, the task list's, is never waiting.)
        let (request, waiting) = match request.body().is_end_stream() {
            true => (request, None),
            false => {
                let (parts, body) = request.into_parts();
                let (body, waiting) = waiting::watch(body);
                (Request::from_parts(parts, body), Some(waiting))
            }
        };
        // One timer for the whole exchange: it bounds the head (both tries), then rides in the
        // body's [`Deadline`].
        let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
        let mut result = self.attempt(request, false, &mut sleep).await;
        let retry = match (&result, replay) {
            (Err(Failed::Retryable(_)), Some(copy)) => Some(copy),
            _ => None,
        };
        // The retry is a second call to KooDrive: it takes a token of its own, or is not made.
        let retry = match retry {
            Some(copy) if self.spend_again(spend, deadline).await => Some(copy),
            _ => None,
        };
        if let Some(copy) = retry {
            self.metrics.upstream_retries.inc();
            tracing::debug!("upstream connection failed before any response byte; retrying once on a fresh connection");
            result = self
                .attempt(copy.map(|()| body::empty()), true, &mut sleep)
                .await;
        }
        let result = result.map_err(|failed| match failed.into_error() {
            GatewayError::UpstreamTimeout(timeout) if waiting.is_some_and(|w| w.on_client()) => {
                GatewayError::ClientBodyTimeout(timeout)
            }
            error => error,
        });
        // hyper undoes only `chunked`: another transfer coding (`gzip, chunked`) would reach the
        // client undone and unlabelled once Transfer-Encoding is stripped (nginx refuses it too).
        // KooDrive's protocol error, counted as one.
        let result = result.and_then(|response| match headers::only_chunked(response.headers()) {
            true => Ok(response),
            false => Err(GatewayError::UpstreamProtocol(
                "KooDrive used a transfer coding other than chunked".into(),
            )),
        });
        // The outcome left for the body's end to tell, if any: a 5xx is a failure unless its
        // body says KooDrive is throttling us (a refusal, not a failure).
        let server_error = matches!(&result, Ok(response) if response.status().is_server_error());
        let outcome = match &result {
            Ok(_) => Some(permit),
            // The client's body failed (cut off, too large, stopped): nothing learnt about
            // KooDrive either way, so a probe's turn passes to the next request.
            Err(error) if error.is_client_fault() => None,
            Err(_) => {
                permit.record(false);
                None
            }
        };
        let timeout = self.timeout;
        Ok(result?.map(|incoming| {
            body::boxed(Deadline::with_sleep(
                incoming,
                sleep,
                timeout,
                outcome,
                server_error,
            ))
        }))
    }

    /// One try, on a pooled connection or (`fresh`) a new one; on failure, also whether it may
    /// be retried.
    async fn attempt(
        &self,
        request: Request<Body>,
        fresh: bool,
        sleep: &mut Pin<Box<Sleep>>,
    ) -> Result<Response<Returning>, Failed> {
        let mut response = std::pin::pin!(self.pool.send(request, fresh));
        // As `tokio::time::timeout_at`, on the exchange's own timer: the answer first, then
        // the deadline.
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(answered) = response.as_mut().poll(cx) {
                return Poll::Ready(Some(answered));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        });
        match answered.await {
            None => Err(Failed::Final(GatewayError::UpstreamTimeout(self.timeout))),
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => Err(classify(error, self.connect_timeout)),
        }
    }

    /// A token for a retry, waited for no later than the exchange's deadline.
    async fn spend_again(&self, (ask, route): Spend, deadline: Instant) -> bool {
        let token = tokio::time::timeout_at(deadline, self.quota.acquire(ask, route));
        matches!(token.await, Ok(Ok(_)))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This client with another budget (the fleet's).
    pub fn with_quota(self, quota: Quota) -> Upstream {
        Upstream { quota, ..self }
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }
}

/// Reads `upstream.ca_file` as the start will, so that `--check-config` fails on one it cannot
/// use, naming the key, where the start would fail after binding its ports.
pub fn check_ca_file(config: &UpstreamConfig) -> Result<(), ConfigError> {
    match &config.ca_file {
        Some(path) => tls_config(Some(path))
            .map(drop)
            .map_err(|e| ConfigError::Invalid {
                key: "upstream.ca_file".to_owned(),
                message: ErrorChain(&e).to_string(),
            }),
        None => Ok(()),
    }
}

/// Idempotent and bodiless: safe to send twice.
fn replayable(request: &Request<Body>) -> bool {
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && request.body().size_hint().exact() == Some(0)
}

fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Connect failures (refused, DNS, TLS) are 502 and retryable; a connect timeout is 504; a
/// connection closed or reset before any response byte is 502 and retryable; anything else after
/// the connection was made (garbage instead of HTTP, a reset mid-answer) is 502.
/// `connect_timeout` names the bound of a connect that timed out (the exchange's own timeout is
/// kept by the caller).
fn classify(error: SendError, connect_timeout: Duration) -> Failed {
    let (error, heard): (BoxError, _) = match error {
        SendError::Connect(error) => {
            let timed_out = causes(&*error).any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                    || e.to_string().contains("timed out")
            });
            return match timed_out {
                true => Failed::Final(GatewayError::UpstreamTimeout(connect_timeout)),
                false => Failed::Retryable(GatewayError::UpstreamConnect(error)),
            };
        }
        SendError::Exchange { error, heard } => (Box::new(error), heard),
    };
    // The client's body failed on the way (cut off, or over its limit): the client's fault.
    let client_body = causes(&*error).find_map(|e| e.downcast_ref::<ClientBodyError>());
    if let Some(body_error) = client_body {
        return match body_error.over_limit() {
            true => Failed::Final(GatewayError::BodyTooLarge {
                limit: body_error.limit,
            }),
            false => Failed::Final(GatewayError::ClientBody(error)),
        };
    }
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let closed_early = causes(&*error).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                [
                    ConnectionReset,
                    ConnectionAborted,
                    BrokenPipe,
                    UnexpectedEof,
                ]
                .contains(&io.kind())
            })
    });
    let error = GatewayError::UpstreamProtocol(error);
    match closed_early && !heard {
        true => Failed::Retryable(error),
        false => Failed::Final(error),
    }
}

/// A failed attempt, and whether it may be sent again (on a fresh connection, when it is
/// idempotent, bodiless and nothing came back): a connect that failed, or a connection closed or
/// reset before the response.
enum Failed {
    Retryable(GatewayError),
    Final(GatewayError),
}

impl Failed {
    fn into_error(self) -> GatewayError {
        match self {
            Failed::Retryable(error) | Failed::Final(error) => error,
        }
    }
}
