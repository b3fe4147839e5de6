//! `GET /koodrive/ose/v1/task/list`: validated, then served from the cache when it can be,
//! otherwise fetched once for all concurrent identical requests, normalized and stored; stale
//! pages cover for KooDrive while it is refreshed or failing.

use std::sync::Arc;
use std::time::Duration;

use http::header::{
    HeaderName, ACCEPT_ENCODING, AGE, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};
use tracing::Instrument;

use crate::auth::KEYED_HEADERS;
use crate::body;
use crate::cache::lock::{Fill, Role};
use crate::cache::outcome::AGES;
use crate::cache::policy::{self, Directive, Freshness};
use crate::cache::{CacheOutcome, Entry, Key, Page, PassReason, TaskListQuery};
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::headers::{CACHE_STATUS, X_TRACEID};
use crate::observe;
use crate::respond;
use crate::route::Route;
use crate::state::{Boxed, Ctx, Live, Served, State};
use crate::upstream::exchange::Outbound;

/// Extra time a collapsed waiter allows beyond the upstream timeout before giving up.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

pub async fn serve(
    state: &Arc<State>,
    ctx: &Ctx<'_>,
    mut parts: Parts,
) -> Result<Served, GatewayError> {
    let trace_id = ctx.trace_id;
    // Validate before any cache or upstream work.
    let query = TaskListQuery::parse(parts.uri.query())?;
    let live = ctx.live;
    // The key binds the page to the identity that asked, after credential precedence. (Query
    // and identity are dropped here rather than carried in the future across its awaits.)
    let key = state
        .cache
        .key(&live.auth.identity(&parts.headers), &query)
        .await;
    drop(query);
    let directive = policy::client_directive(&parts.headers);
    let config = &*state.cache.config();

    // A stored page: fresh is served as it is; stale-while-revalidate is served while one
    // background refresh runs; older ones are kept for stale-if-error.
    let stored = match directive {
        Directive::Normal => state.cache.get(&key).await,
        Directive::Refresh | Directive::NoStore => None,
    };
    if let Some(entry) = &stored {
        let age = entry.age();
        match policy::freshness(age, config) {
            Freshness::Fresh(_) => {
                let ttl = policy::ttl_seconds(age, config);
                let outcome = match entry.is_shared() {
                    false => CacheOutcome::Hit { ttl },
                    true => CacheOutcome::SharedHit { ttl },
                };
                return Ok(from_entry(state, entry, age, outcome));
            }
            Freshness::Revalidate => {
                let ttl = policy::ttl_seconds(age, config);
                let outcome = CacheOutcome::StaleWhileRevalidate { ttl };
                bound_upstream(&mut parts.headers, trace_id);
                let span = observe::refresh_span(trace_id);
                let refresh = fetcher(state, Arc::clone(live), &parts, span);
                state
                    .cache
                    .refresh_in_background(key, refresh, &state.admission);
                return Ok(from_entry(state, entry, age, outcome));
            }
            Freshness::IfError | Freshness::Dead => {}
        }
    }
    // Everything after this waits on KooDrive, in a boxed future (see `pipeline::Boxed`).
    bound_upstream(&mut parts.headers, trace_id);
    serve_miss(
        state,
        Arc::clone(live),
        parts,
        key,
        directive,
        config,
        stored,
    )
    .await
}

/// Headers that describe a request's body. The task list is fetched with none (a GET's body
/// means nothing, and a shared page cannot depend on one caller's), so a caller's
/// `Content-Length` would leave KooDrive waiting for bytes that never come.
const BODY_ONLY: [HeaderName; 4] = [CONTENT_LENGTH, CONTENT_TYPE, CONTENT_ENCODING, EXPECT];

/// A task-list request's headers as they go to KooDrive: its trace id added, and no header about
/// a body, which is never sent (Varnish drops a GET's body too).
fn bound_upstream(headers: &mut HeaderMap, trace_id: &HeaderValue) {
    headers.insert(X_TRACEID, trace_id.clone());
    for name in BODY_ONLY {
        headers.remove(name);
    }
}

/// A task-list request the cache could not answer by itself; `stored` is a page too old to serve
/// as it is, kept for stale-if-error. Boxed (see [`Boxed`]).
fn serve_miss<'a>(
    state: &'a Arc<State>,
    live: Arc<Live>,
    parts: Parts,
    key: Key,
    directive: Directive,
    config: &'a CacheConfig,
    stored: Option<Entry>,
) -> Boxed<'a, Result<Served, GatewayError>> {
    Box::pin(async move {
        // A page known to be too large to share streams straight through.
        if state.cache.is_pass(&key) {
            CacheOutcome::Pass(PassReason::TooLarge).count(&state.metrics);
            return pass(state, &live, parts, PassReason::TooLarge).await;
        }

        let (fill, outcome) = fetch_page(state, &live, &parts, key, directive).await;
        // What this request answers with: its page, or it passes (too large to share, or a page
        // its flight's leader got for its own request only), or the failure.
        let result = match fill {
            Fill::TooLarge => return pass(state, &live, parts, PassReason::TooLarge).await,
            Fill::Private(_) if outcome == CacheOutcome::Collapsed => {
                return pass(state, &live, parts, PassReason::Private).await
            }
            Fill::Shared(fetched) | Fill::Private(fetched) => Ok(fetched),
            Fill::Failed(error) => Err(error),
        };

        // KooDrive failing (not refusing): a stale page within stale-if-error beats the failure.
        let failed_status = match &result {
            Ok(fetched) if policy::upstream_failed(&fetched.page) => {
                Some(Some(fetched.page.status))
            }
            Err(error) if error.is_upstream_failure() => Some(None),
            _ => None,
        };
        if let (Some(upstream_status), Some(entry)) = (failed_status, &stored) {
            let age = entry.age();
            if policy::freshness(age, config) != Freshness::Dead {
                let ttl = policy::ttl_seconds(age, config);
                let outcome = CacheOutcome::StaleIfError {
                    ttl,
                    upstream: upstream_status,
                };
                return Ok(from_entry(state, entry, age, outcome));
            }
        }
        match result {
            Ok(fetched) => {
                let mut response = fetched.page.to_response();
                set_cache_status(response.headers_mut(), outcome);
                Ok((response, outcome))
            }
            Err(error) => Err(GatewayError::Collapsed(error)),
        }
    })
}

/// Fetches the page as the client's directive asks: collapsed with concurrent identical misses,
/// or on its own (`no-cache`, `no-store`); with what the cache did, counted when decided.
async fn fetch_page(
    state: &Arc<State>,
    live: &Arc<Live>,
    parts: &Parts,
    key: Key,
    directive: Directive,
) -> (Fill, CacheOutcome) {
    let fetch = || fetcher(state, Arc::clone(live), parts, tracing::Span::current());
    let max_wait = state.upstream.timeout() + WAIT_MARGIN;
    match directive {
        Directive::Normal => {
            let (flight, role) = state.cache.collapse(key, fetch(), &state.admission);
            // Counted now: a client that hangs up while it waits still made (or joined) the
            // fetch.
            let waiting = match role {
                Role::Leader => CacheOutcome::Miss { stored: false },
                Role::Collapsed => CacheOutcome::Collapsed,
            };
            waiting.count(&state.metrics);
            let fill = flight.wait(max_wait).await;
            let outcome = match (role, &fill) {
                (Role::Leader, Fill::Shared(fetched) | Fill::Private(fetched)) => {
                    CacheOutcome::Miss {
                        stored: fetched.stored,
                    }
                }
                _ => waiting,
            };
            (fill, outcome)
        }
        Directive::Refresh => {
            CacheOutcome::Refresh { stored: false }.count(&state.metrics);
            let requested_at = tokio::time::Instant::now();
            let fill = state.cache.fetched(fetch().await, |page| {
                state.cache.store_if_allowed(key, page, requested_at)
            });
            let stored = matches!(&fill, Fill::Shared(fetched) if fetched.stored);
            (fill, CacheOutcome::Refresh { stored })
        }
        Directive::NoStore => {
            CacheOutcome::Bypass.count(&state.metrics);
            (
                state.cache.fetched(fetch().await, |_| false),
                CacheOutcome::Bypass,
            )
        }
    }
}

/// The upstream request for one task-list page, as a future that owns everything it needs (it
/// may run in a flight's task after the requesting client is gone). Signed when it is sent.
/// Boxed (see [`Boxed`]): the future is tens of KiB, and unboxed it would be built on the stack
/// of whoever starts it; `serve` starts a stale page's refresh, so every request's poll, hits
/// included, would reserve and probe that stack.
fn fetcher(
    state: &Arc<State>,
    live: Arc<Live>,
    parts: &Parts,
    span: tracing::Span,
) -> Boxed<'static, Result<Page, GatewayError>> {
    let state = Arc::clone(state);
    let uri = parts.uri.clone();
    // The page is shared by every request with its key, so it is fetched with only what the key
    // holds (and what the gateway adds: the trace id here, credentials when sent). So neither a
    // caller's validators or range (a 304 or a 206 the others never asked for; nginx and Varnish
    // drop these from a cache fill too) nor a cookie or a look-alike of an identity header
    // reaches KooDrive.
    let mut headers = HeaderMap::with_capacity(KEYED_HEADERS.len() + 2);
    for name in KEYED_HEADERS.iter().chain([&X_TRACEID]) {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    // The stored page is decoded whatever the caller accepts, so ask for what we can decode.
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    Box::pin(
        async move {
            let outbound = Outbound {
                route: Route::TaskList,
                method: Method::GET,
                uri: &uri,
                headers,
                body: body::empty(),
                body_sha256: None,
            };
            let response = state.upstream.exchange(&live.auth, outbound).await?;
            let rule = live.task_list_rule();
            let limit = live.normalize.max_body;
            respond::page(response, rule, limit, &state.budget, &state.metrics).await
        }
        .instrument(span),
    )
}

/// Forwards the request as the client sent it and streams the answer through, normalized only if
/// it turns out to fit after all (a page too large to share or store: Varnish's "pass").
/// (Counted by the caller: a request that learnt it must pass was counted when it fetched.)
/// `reason` says why, in `Cache-Status`.
async fn pass(
    state: &Arc<State>,
    live: &Live,
    parts: Parts,
    reason: PassReason,
) -> Result<Served, GatewayError> {
    let outbound = Outbound {
        route: Route::TaskList,
        method: Method::GET,
        uri: &parts.uri,
        headers: parts.headers,
        body: body::empty(),
        body_sha256: None,
    };
    let response = state.upstream.exchange(&live.auth, outbound).await?;
    let rule = live.task_list_rule();
    let limit = live.normalize.max_body;
    let mut response = respond::shape(response, rule, limit, &state.budget, &state.metrics).await?;
    let outcome = CacheOutcome::Pass(reason);
    set_cache_status(response.headers_mut(), outcome);
    Ok((response, outcome))
}

/// A stored page's response, its decision counted.
fn from_entry(state: &State, entry: &Entry, age: Duration, outcome: CacheOutcome) -> Served {
    outcome.count(&state.metrics);
    let mut response = entry.to_response();
    let headers = response.headers_mut();
    headers.insert(AGE, AGES.get(age.as_secs(), HeaderValue::from));
    set_cache_status(headers, outcome);
    (response, outcome)
}

fn set_cache_status(headers: &mut HeaderMap, outcome: CacheOutcome) {
    if let Some(value) = outcome.cache_status() {
        headers.insert(CACHE_STATUS, value);
    }
}
