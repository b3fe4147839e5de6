//! The request path, top to bottom. `handle` is the outer layer (trace id, span, admission,
//! errors into responses, the observe layer); `proxy` is the inner one that returns `Result`,
//! resolves the request once and reads as one step per line.

mod buffered;

use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::auth::sign;
use crate::body::{self, Body};
use crate::cache::CacheOutcome;
use crate::error::GatewayError;
use crate::framing::Ambiguous;
use crate::headers::{self, X_TRACEID};
use crate::metrics::{self, ReasonLabels};
use crate::observe::{self, Observe};
use crate::quota::Ask;
use crate::route::Route;
use crate::state::{Boxed, Ctx, Served, State};
use crate::upstream::exchange::Outbound;
use crate::{respond, task_list, task_poll, telemetry, trace_id};

pub async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let route = Route::of(request.method(), request.uri().path());
    // The caller's trace id, or one made here; a malformed one is refused (under a made one).
    let (trace_id, bad_trace_id) = match trace_id::from_headers(request.headers()) {
        Ok(trace_id) => (trace_id, None),
        Err(error) => (trace_id::generate(), Some(error)),
    };
    let span = observe::request_span(&trace_id, &request, route);
    telemetry::adopt_parent(request.headers(), &span);
    let method = metrics::Method::from(request.method());
    let head = request.method() == Method::HEAD;
    // Framing the connection's guard found ambiguous: refused, never forwarded.
    let ambiguous = request.extensions().get::<Ambiguous>().copied();
    async move {
        // Recorded once: when answered below, or as a 499 if the client hangs up first.
        let observe = Observe::start(&state.metrics, route, method, started);
        let result = match (ambiguous, bad_trace_id) {
            (Some(Ambiguous(why)), _) => Err(GatewayError::BadRequest(why)),
            (None, Some(error)) => Err(error),
            (None, None) => match state.admission.admit() {
                Err(shed) => Err(shed),
                Ok(_admitted) => proxy(&state, request, &trace_id, route).await,
            },
        };
        let (mut response, cache, code) = match result {
            Ok((response, cache)) => (response, cache, None),
            Err(error) => {
                observe::failed(&error, &trace_id);
                (error.to_response(), CacheOutcome::None, Some(error.code()))
            }
        };
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
        observe.answered(response.status().as_u16(), cache, code);
        response
    }
    .instrument(span)
    .await
}

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
    // Resolved once: route, live config, normalization rule; carried down from here.
    let live = state.live.load_full();
    let ctx = Ctx::resolve(route, &live, &parts, trace_id);
    // The task list has its own path: validation, cache, collapsing, stale pages. It adds the
    // trace id only when it goes upstream (a hit never does).
    if route == Route::TaskList {
        return task_list::serve(state, &ctx, parts).await;
    }
    // The task polls (and other `[[cache.routes]]`) take the same cached path.
    if let Some(cached) = task_poll::resolve(state, &ctx, &mut parts).await {
        return task_list::serve_cached(state, &ctx, parts, cached).await;
    }
    // The trace id goes upstream. An expectation is the gateway's to meet (hyper sends the 100
    // when the body is first read), not KooDrive's: nginx and Envoy drop it too.
    parts.headers.insert(X_TRACEID, trace_id.clone());
    parts.headers.remove(header::EXPECT);
    forward_other(state, ctx, parts, incoming).await
}

/// Every request but the task list's: forwarded, its body streamed (or read whole to be signed),
/// its answer normalized where a rule applies. Boxed (see [`Boxed`]).
fn forward_other<'a>(
    state: &'a Arc<State>,
    ctx: Ctx<'a>,
    mut parts: http::request::Parts,
    incoming: Incoming,
) -> Boxed<'a, Result<Served, GatewayError>> {
    Box::pin(async move {
        let auth = &ctx.live.auth;
        // A task write makes the writer's cached lists stale once KooDrive accepts it.
        let writer = (ctx.route == Route::TaskWrite).then(|| auth.identity(&parts.headers).user_id);
        // A signed request's body is read whole (bounded), since its hash is signed; others stream.
        let signs = auth.signs(&parts.headers);
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
            let mut reservation = buffered::reserve_declared(&state.budget, &parts.headers)?;
            // Bounded in time as a streamed body is (by the exchange's deadline): a client that
            // stops sending must not hold its place in flight for ever.
            let timeout = state.upstream.timeout();
            let read = buffered::read_bounded(incoming, limit, &mut reservation);
            let bytes = tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| GatewayError::ClientBodyTimeout(timeout))??;
            _held = Some(reservation);
            buffered::set_content_length(&mut parts, bytes.len());
            (body::full(bytes.clone()), Some(sign::payload_hash(&bytes)))
        } else {
            (body::client_stream(incoming, limit), None)
        };
        let head = parts.method == Method::HEAD;
        // A write whose client hangs up while it is out (hyper then drops this future) may have
        // been applied all the same: invalidated then too, by this guard.
        let mut unsettled = writer.map(|user_id| UnsettledWrite {
            state,
            user_id: Some(user_id),
        });
        let outbound = Outbound {
            route: ctx.route,
            method: parts.method,
            uri: &parts.uri,
            headers: parts.headers,
            body,
            body_sha256: body_sha256.as_deref(),
            ask: Ask::for_route(ctx.route),
        };
        let response = state.upstream.exchange(auth, outbound).await;
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
                // Before the answer goes back: in fleet mode, every sidecar then misses the
                // writer's old lists (bounded by fleet.timeout).
                true => unsettled.invalidate().await,
                false => unsettled.user_id = None,
            }
        }
        let response = response?;
        // Normalized bodies where a rule applies (and KooDrive's error bodies); the rest streams.
        // An answer to HEAD has no body to shape: its headers (Content-Length too) are GET's.
        if head {
            return Ok((response, CacheOutcome::None));
        }
        let limit = ctx.live.normalize.max_body;
        let response = respond::shape(
            response,
            ctx.rule,
            limit,
            &state.budget,
            &state.metrics,
            state.upstream.quota(),
        )
        .await?;
        Ok((response, CacheOutcome::None))
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
    async fn invalidate(&mut self) {
        if let Some(user_id) = self.user_id.take() {
            self.state.cache.invalidate_user(&user_id).await;
            self.counted();
        }
    }

    fn counted(&self) {
        self.state
            .metrics
            .cache_invalidations
            .get_or_create(&ReasonLabels { reason: "write" })
            .inc();
        tracing::debug!("task write accepted: the writer's cached task lists are invalidated");
    }
}

impl Drop for UnsettledWrite<'_> {
    /// Nobody waits for the answer any more: the invalidation runs on by itself.
    fn drop(&mut self) {
        if let Some(user_id) = self.user_id.take() {
            let cache = Arc::clone(&self.state.cache);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { cache.invalidate_user(&user_id).await });
            }
            self.counted();
        }
    }
}
