//! The request path, top to bottom. `handle` is the outer layer (trace id, span, load shedding,
//! errors into responses, access log); `proxy` is the inner one that returns `Result` and reads
//! as one step per line.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{field::Empty, Instrument};

use crate::auth::{sign, Auth};
use crate::body::{self, Body};
use crate::budget::{Budget, Reservation};
use crate::cache::TaskListCache;
use crate::error::GatewayError;
use crate::framing::Ambiguous;
use crate::headers::{self, X_TRACEID};
use crate::metrics::{self, Metrics, RequestLabels, RouteLabels, UpstreamLabels};
use crate::normalize::NormalizeConfig;
use crate::route::Route;
use crate::upstream::Upstream;
use crate::{respond, task_list, telemetry, trace_id};

/// A future on the heap, for the paths that wait on KooDrive. Every request's future is sized for
/// its largest branch; boxed, those branches cost a cache hit one pointer instead of kilobytes
/// held for each request in flight. (Built in a plain function: `Box::pin` of an async call inside
/// an async function still reserves the call's whole future in the caller's.)
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Everything a request needs, shared by all connections.
pub struct State {
    pub upstream: Upstream,
    /// What a reload (SIGHUP) may change, swapped whole; a request keeps the one it started with.
    pub live: ArcSwap<Live>,
    pub host: HeaderValue,
    pub max_signed_body: u64,
    /// The bound on streamed (unsigned) request bodies.
    pub max_body: u64,
    /// Requests admitted at once; more are shed with a 503 (the gauge `in_flight` counts them).
    pub max_in_flight: usize,
    /// Bytes all buffered bodies may hold at once (`server.max_buffered_bytes`).
    pub budget: Budget,
    pub cache: Arc<TaskListCache>,
    pub metrics: Arc<Metrics>,
}

/// The reloadable part of the gateway: credentials and normalization rules.
pub struct Live {
    pub auth: Auth,
    pub normalize: NormalizeConfig,
}

/// What the cache did for a request, returned with its response to the access log and the
/// metrics.
#[derive(Debug, Clone, Copy)]
pub struct CacheLabel(pub &'static str);

/// A response and what the cache did for it.
pub type Served = (Response<Body>, CacheLabel);

pub async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let route = Route::of(request.method(), request.uri().path());
    // The caller's trace id, or one made here; a malformed one is refused (under a made one).
    let (trace_id, bad_trace_id) = match trace_id::from_headers(request.headers()) {
        Ok(trace_id) => (trace_id, None),
        Err(error) => (trace_id::generate(), Some(error)),
    };
    let span = tracing::info_span!(
        "request",
        trace_id = trace_id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
        route = route.name(),
        upstream_status = Empty,
        upstream_ms = Empty,
    );
    telemetry::adopt_parent(request.headers(), &span);
    let method = metrics::Method::from(request.method());
    let head = request.method() == Method::HEAD;
    // Framing the connection's guard found ambiguous: refused, never forwarded.
    let ambiguous = request.extensions().get::<Ambiguous>().copied();
    async move {
        // Recorded once: when answered below, or as a 499 if the client hangs up first.
        let access = Access {
            metrics: &state.metrics,
            route,
            method,
            started,
            pending: true,
        };
        let result = match (ambiguous, bad_trace_id) {
            (Some(Ambiguous(why)), _) => Err(GatewayError::BadRequest(why)),
            (None, Some(error)) => Err(error),
            (None, None) => match InFlight::admit(&state.metrics.in_flight, state.max_in_flight) {
                None => {
                    state.metrics.shed.inc();
                    Err(GatewayError::Overloaded(state.max_in_flight))
                }
                Some(_counted) => proxy(&state, request, &trace_id, route).await,
            },
        };
        let mut code = None;
        let (mut response, CacheLabel(cache)) = result.unwrap_or_else(|error| {
            code = Some(error.code());
            if error.status().is_client_error() {
                // The client's own error, answered as it should be: its access event says so
                // (with the code); the detail is for debugging only.
                tracing::debug!(
                    code = error.code(),
                    error = %ErrorChain(&error),
                    "request refused"
                );
            } else {
                // The trace id is on the event too: with a warn-only filter the span is off (a
                // span at WARN would cost every request, cache hits included).
                tracing::warn!(
                    trace_id = trace_id.to_str().unwrap_or_default(),
                    code = error.code(),
                    error = %ErrorChain(&error),
                    "request failed"
                );
            }
            (error.to_response(), NO_CACHE)
        });
        response.headers_mut().insert(X_TRACEID, trace_id);
        // An answer to HEAD has GET's headers and no body, the gateway's own errors included:
        // hyper's HTTP/2 server would send one, and the client would reset the stream.
        if head {
            *response.body_mut() = body::empty();
        }
        if ambiguous.is_some() {
            // Nothing after an ambiguous request on this connection can be trusted.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        access.answered(response.status().as_u16(), cache, code);
        response
    }
    .instrument(span)
    .await
}

/// nginx's status for a request whose client closed the connection before it was answered.
const CLIENT_CLOSED: u16 = 499;

/// A request's access event and its count in the metrics, recorded once: when it is answered,
/// or, if its client hangs up first (hyper then drops the request's future, and this with it),
/// as a [`CLIENT_CLOSED`] at that moment. So every request leaves one access event, as with
/// nginx, including the ones nobody was left to answer.
struct Access<'a> {
    metrics: &'a Metrics,
    route: Route,
    method: metrics::Method,
    started: Instant,
    /// Not recorded yet.
    pending: bool,
}

impl Access<'_> {
    /// `code`: the gateway's error code, when the gateway made the answer as an error.
    fn answered(mut self, status: u16, cache: &'static str, code: Option<&'static str>) {
        self.pending = false;
        self.record(status, cache, code);
    }

    // Inlined: called out of line, a cache hit ran about 300 more instructions (callgrind:
    // 26,061 against 25,757 per hit).
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

impl Drop for Access<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.record(CLIENT_CLOSED, NO_CACHE.0, None);
        }
    }
}

/// A request in flight: admitted while fewer than the limit are (load shedding), counted in the
/// gauge that says how many are, and counted out when dropped, whether the request was answered
/// or its client hung up and hyper dropped it mid-way. The gauge is the count itself: one atomic
/// update each way, where a semaphore beside the gauge took a lock to give its permit back.
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn admit(gauge: &'a Gauge, max: usize) -> Option<InFlight<'a>> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        gauge
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight(gauge))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs `fetch` counted in the `in_flight` gauge, from its first poll to its end. For the
/// fetches that outlive their request (a flight whose leader hung up, a background refresh): they
/// hold an upstream connection as a request does, so new requests are shed while they run, and
/// one caller starting fetches and hanging up cannot keep more than `server.max_in_flight` open.
pub async fn counted<F: std::future::Future>(gauge: Gauge, fetch: F) -> F::Output {
    struct Counted(Gauge);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    gauge.inc();
    let _counted = Counted(gauge);
    fetch.await
}

/// The label of a response the cache had nothing to do with.
const NO_CACHE: CacheLabel = CacheLabel("none");

/// Forwards one request to KooDrive.
async fn proxy(
    state: &Arc<State>,
    request: Request<Incoming>,
    trace_id: &HeaderValue,
    route: Route,
) -> Result<Served, GatewayError> {
    let (mut parts, incoming) = request.into_parts();
    // A tunnel, or an echo of the credentials about to be injected: never sent.
    if matches!(parts.method, Method::CONNECT | Method::TRACE) {
        return Err(GatewayError::MethodNotAllowed(parts.method));
    }
    // Who the request acts as must be one answer: the cache key, the signature and KooDrive
    // would otherwise each read their own. (A repeated Host is refused there too.)
    if let Some(why) = headers::repeated_identity(&parts.headers) {
        return Err(GatewayError::BadRequest(why));
    }
    // RFC 9112 section 3.2: an HTTP/1.1 request without Host is a 400, as nginx answers it.
    if parts.version == Version::HTTP_11 && !parts.headers.contains_key(header::HOST) {
        return Err(GatewayError::BadRequest(
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    if parts.version == Version::HTTP_2 {
        // A value with spaces around it is malformed over HTTP/2: the key would read it trimmed
        // and KooDrive as it is, so it is refused, never forwarded.
        if let Some(name) = headers::padded_value(&parts.headers) {
            return Err(GatewayError::PaddedHeader(name.clone()));
        }
        headers::join_cookies(&mut parts.headers);
    }
    // Connection-level headers stay on this hop.
    headers::strip_hop_by_hop(&mut parts.headers);
    // The task list has its own path: validation, cache, collapsing, stale pages. It adds the
    // trace id only when it goes upstream (a hit never does).
    if route == Route::TaskList {
        return task_list::serve(state, parts, trace_id).await;
    }
    // The trace id goes upstream. An expectation is the gateway's to meet (hyper sends the 100
    // when the body is first read), not KooDrive's: nginx and Envoy drop it too.
    parts.headers.insert(X_TRACEID, trace_id.clone());
    parts.headers.remove(header::EXPECT);
    forward_other(state, parts, incoming, route).await
}

/// Every request but the task list's: forwarded, its body streamed (or read whole to be signed),
/// its answer normalized where a rule applies. Boxed (see [`Boxed`]).
fn forward_other(
    state: &Arc<State>,
    mut parts: http::request::Parts,
    incoming: Incoming,
    route: Route,
) -> Boxed<'_, Result<Served, GatewayError>> {
    Box::pin(async move {
        let live = state.live.load_full();
        // A task write makes the writer's cached lists stale once KooDrive accepts it.
        let writer =
            (route == Route::TaskWrite).then(|| live.auth.identity(&parts.headers).user_id);
        // A signed request's body is read whole (bounded), since its hash is signed; others stream.
        let signs = live.auth.signs(&parts.headers);
        let limit = match signs {
            true => state.max_signed_body,
            false => state.max_body,
        };
        if headers::declared_length(&parts.headers).is_some_and(|len| len > limit) {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        // A body read whole is held against the memory budget, from before its first byte is
        // read until the request ends (this future is dropped).
        let mut _held = None;
        let (body, body_sha256) = if signs {
            let mut reservation = reserve_declared(&state.budget, &parts.headers)?;
            // Bounded in time as a streamed body is (by the exchange's deadline): a client that
            // stops sending must not hold its place in flight for ever.
            let timeout = state.upstream.timeout();
            let read = read_bounded(incoming, limit, &mut reservation);
            let bytes = tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| GatewayError::ClientBodyTimeout(timeout))??;
            _held = Some(reservation);
            set_content_length(&mut parts, bytes.len());
            (body::full(bytes.clone()), Some(sign::payload_hash(&bytes)))
        } else {
            (body::client_stream(incoming, limit), None)
        };
        let rule = live.normalize.rules.find(&parts.method, parts.uri.path());
        let head = parts.method == Method::HEAD;
        // A write whose client hangs up while it is out (hyper then drops this future) may have
        // been applied all the same: invalidated then too, by this guard.
        let mut unsettled = writer.map(|user_id| UnsettledWrite {
            state,
            user_id: Some(user_id),
        });
        let response = send(
            state,
            &live,
            parts.method,
            &parts.uri,
            parts.headers,
            body,
            body_sha256.as_deref(),
        )
        .await;
        // A write KooDrive accepted, or may have: one whose answer timed out or broke off after
        // it was sent. A needless miss costs less than a list that misses the write.
        let applied = match &response {
            Ok(response) => response.status().is_success(),
            Err(error) => matches!(
                error,
                GatewayError::UpstreamTimeout(_) | GatewayError::UpstreamProtocol(_)
            ),
        };
        if let Some(unsettled) = &mut unsettled {
            match applied {
                true => unsettled.invalidate(),
                false => unsettled.user_id = None,
            }
        }
        let response = response?;
        // Normalized bodies where a rule applies (and KooDrive's error bodies); the rest streams.
        // An answer to HEAD has no body to shape: its headers (Content-Length too) are GET's.
        if head {
            return Ok((response, NO_CACHE));
        }
        let response = respond::shape(
            response,
            rule,
            live.normalize.max_body,
            &state.budget,
            &state.metrics,
        )
        .await?;
        Ok((response, NO_CACHE))
    })
}

/// A task write sent to KooDrive whose outcome is not known yet: dropped unsettled (its client
/// gone mid-exchange), it invalidates the writer's lists, as an accepted write does.
struct UnsettledWrite<'a> {
    state: &'a State,
    /// The writer, until settled.
    user_id: Option<HeaderValue>,
}

impl UnsettledWrite<'_> {
    fn invalidate(&mut self) {
        if let Some(user_id) = self.user_id.take() {
            self.state.cache.invalidate_user(&user_id);
            self.state
                .metrics
                .cache_invalidations
                .get_or_create(&metrics::ReasonLabels { reason: "write" })
                .inc();
            tracing::debug!("task write accepted: the writer's cached task lists are invalidated");
        }
    }
}

impl Drop for UnsettledWrite<'_> {
    fn drop(&mut self) {
        self.invalidate();
    }
}

/// Builds the upstream request for a client's method, URI and (stripped) headers, injects
/// authentication last, and sends it.
pub async fn send(
    state: &State,
    live: &Live,
    method: Method,
    uri: &http::Uri,
    headers: http::HeaderMap,
    body: Body,
    body_sha256: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = Request::new(body).into_parts();
    parts.method = method;
    parts.uri = state.upstream.uri(uri.path_and_query())?;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    // Authentication last, so the signature covers exactly what is sent.
    live.auth.apply(
        &parts.method,
        &parts.uri,
        &mut parts.headers,
        &state.host,
        body_sha256,
        time::OffsetDateTime::now_utc(),
    )?;
    telemetry::inject_context(&mut parts.headers);
    forward(state, Request::from_parts(parts, body)).await
}

/// The upstream exchange itself, in its own span, with hop-by-hop headers stripped from the answer.
pub async fn forward(
    state: &State,
    request: Request<Body>,
) -> Result<Response<Body>, GatewayError> {
    let started = Instant::now();
    let route = Route::of(request.method(), request.uri().path()).name();
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
    let result = state
        .upstream
        .send(request, state.upstream.deadline())
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let current = tracing::Span::current();
    current.record("upstream_ms", elapsed.as_millis() as u64);
    let outcome = match &result {
        Ok(response) => metrics::status_class(response.status().as_u16()),
        Err(GatewayError::UpstreamTimeout(_)) => "timeout",
        Err(GatewayError::UpstreamConnect(_)) => "connect_error",
        Err(GatewayError::CircuitOpen(_)) => "circuit_open",
        // The client's body failed, not KooDrive.
        Err(error) if error.is_client_fault() => "client_error",
        Err(_) => "protocol_error",
    };
    state
        .metrics
        .upstream_requests
        .get_or_create(&UpstreamLabels { route, outcome })
        .inc();
    // KooDrive's latency: a call never made (the breaker open, the client's body failing first)
    // would pull its quantiles toward 0 exactly when KooDrive is slow.
    if !matches!(outcome, "circuit_open" | "client_error") {
        state
            .metrics
            .upstream_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }
    let mut response = result?;
    span.record("status", response.status().as_u16());
    current.record("upstream_status", response.status().as_u16());
    // Both framings: hyper read the body by Transfer-Encoding, and a Content-Length kept beside
    // the de-chunked body would frame the answer wrongly (RFC 9112 section 6.3: removed before
    // forwarding).
    if response.headers().contains_key(header::TRANSFER_ENCODING) {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// A reservation for a body to be read whole: its declared length at once (503 when the budget
/// has not that much free now, 413 when it never could), or nothing yet for a chunked body.
fn reserve_declared(
    budget: &Budget,
    headers: &http::HeaderMap,
) -> Result<Reservation, GatewayError> {
    let declared = headers::declared_length(headers).unwrap_or(0);
    if declared > budget.max() {
        return Err(GatewayError::OverBudget {
            len: declared,
            budget: budget.max(),
        });
    }
    budget
        .reserve(declared)
        .ok_or(GatewayError::BufferBudget(budget.max()))
}

/// Reads a body whole, up to `limit` bytes, each frame reserved in `held` before it is kept.
async fn read_bounded(
    incoming: Incoming,
    limit: u64,
    held: &mut Reservation,
) -> Result<Bytes, GatewayError> {
    let mut limited = Limited::new(incoming, usize::try_from(limit).unwrap_or(usize::MAX));
    // Sized once for a declared length (reserved already), rather than grown by doubling past
    // what is counted.
    let mut buffer = bytes::BytesMut::with_capacity(usize::try_from(held.bytes()).unwrap_or(0));
    while let Some(frame) = limited.frame().await {
        let frame = frame.map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
            true => GatewayError::BodyTooLarge { limit },
            false => GatewayError::ClientBody(e),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = (buffer.len() + data.len()) as u64;
        if !held.grow_to(total) {
            return Err(over_budget(held, total));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Why a request body could not grow to `total` bytes in the budget: it never could (413), or
/// not now (503).
fn over_budget(held: &Reservation, total: u64) -> GatewayError {
    match total > held.max() {
        true => GatewayError::OverBudget {
            len: total,
            budget: held.max(),
        },
        false => GatewayError::BufferBudget(held.max()),
    }
}

/// A buffered body has a known length: say so, except on a bodiless GET or HEAD.
fn set_content_length(parts: &mut http::request::Parts, len: usize) {
    let bodiless = len == 0 && (parts.method == Method::GET || parts.method == Method::HEAD);
    if bodiless && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        return;
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
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
