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

use crate::auth::{ADDED_HEADERS, KEYED_HEADERS};
use crate::body;
use crate::cache::lock::{Fill, Role};
use crate::cache::outcome::AGES;
use crate::cache::policy::{self, Directive, Freshness};
use crate::cache::{CacheOutcome, Entry, Key, Page, PassReason, TaskListQuery};
use crate::config::routes::Windows;
use crate::error::GatewayError;
use crate::headers::{self, CACHE_STATUS, X_TRACEID};
use crate::observe;
use crate::quota::Ask;
use crate::respond;
use crate::route::Route;
use crate::state::{Boxed, Ctx, Live, Served, State};
use crate::upstream::exchange::Outbound;

/// Extra time a collapsed waiter allows beyond the upstream timeout before giving up.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

pub async fn serve(
    state: &Arc<State>,
    ctx: &Ctx<'_>,
    parts: Parts,
) -> Result<Served, GatewayError> {
    // Validate before any cache or upstream work.
    let query = TaskListQuery::parse(parts.uri.query())?;
    // The key binds the page to the identity that asked, after credential precedence. (Query
    // and identity are dropped here rather than carried in the future across its awaits.)
    let key = state
        .cache
        .key(&ctx.live.auth.identity(&parts.headers), &query)
        .await;
    drop(query);
    let windows = state.cache.config().windows();
    let cached = Cached {
        key,
        windows,
        route: Route::TaskList,
    };
    serve_cached(state, ctx, parts, cached).await
}

/// A cached route's request, resolved: its key, its route's windows, and its route.
#[derive(Debug, Clone, Copy)]
pub struct Cached {
    pub key: Key,
    pub windows: Windows,
    pub route: Route,
}

/// The path every cached route shares: hit, stale, lock, fetch or pass. `parts.uri` is what
/// is fetched for the whole key.
pub async fn serve_cached(
    state: &Arc<State>,
    ctx: &Ctx<'_>,
    mut parts: Parts,
    cached: Cached,
) -> Result<Served, GatewayError> {
    let trace_id = ctx.trace_id;
    let live = ctx.live;
    let Cached { key, windows, .. } = cached;
    let directive = policy::client_directive(&parts.headers);

    // A stored page: fresh is served as it is; stale-while-revalidate is served while one
    // background refresh runs; older ones are kept for stale-if-error.
    let stored = match directive {
        Directive::Normal => state.cache.get(&key).await,
        Directive::Refresh | Directive::NoStore => None,
    };
    if let Some(entry) = &stored {
        let age = entry.age();
        match policy::freshness(age, windows) {
            Freshness::Fresh(_) => {
                let ttl = policy::ttl_seconds(age, windows);
                let outcome = match entry.is_shared() {
                    false => CacheOutcome::Hit { ttl },
                    true => CacheOutcome::SharedHit { ttl },
                };
                return Ok(from_entry(state, entry, age, outcome));
            }
            Freshness::Revalidate => {
                let ttl = policy::ttl_seconds(age, windows);
                let outcome = CacheOutcome::StaleWhileRevalidate { ttl };
                bound_upstream(&mut parts.headers, trace_id);
                let span = observe::refresh_span(trace_id);
                // Skipped when no budget is free at once: this stale page is served on.
                let refresh = fetcher(
                    state,
                    Arc::clone(live),
                    &parts,
                    span,
                    cached.route,
                    Ask::BACKGROUND,
                );
                state
                    .cache
                    .refresh_in_background(key, windows, refresh, &state.admission);
                return Ok(from_entry(state, entry, age, outcome));
            }
            Freshness::IfError | Freshness::Dead => {}
        }
    }
    // Everything after this waits on KooDrive, in a boxed future (see `pipeline::Boxed`).
    bound_upstream(&mut parts.headers, trace_id);
    serve_miss(state, Arc::clone(live), parts, cached, directive, stored).await
}

/// Headers that describe a request's body. The task list is fetched with none (a GET's body
/// means nothing, and a shared page cannot depend on one caller's), so a caller's
/// `Content-Length` would leave KooDrive waiting for bytes that never come.
const BODY_ONLY: [HeaderName; 4] = [CONTENT_LENGTH, CONTENT_TYPE, CONTENT_ENCODING, EXPECT];

/// A task-list request's headers as they go to KooDrive: its trace id added, and no header about
/// a body, which is never sent (Varnish drops a GET's body too).
fn bound_upstream(headers: &mut HeaderMap, trace_id: &HeaderValue) {
    headers.insert(X_TRACEID, trace_id.clone());
    headers::remove_present(headers, &BODY_ONLY);
}

/// A task-list request the cache could not answer by itself; `stored` is a page too old to serve
/// as it is, kept for stale-if-error. Boxed (see [`Boxed`]).
fn serve_miss<'a>(
    state: &'a Arc<State>,
    live: Arc<Live>,
    parts: Parts,
    cached: Cached,
    directive: Directive,
    stored: Option<Entry>,
) -> Boxed<'a, Result<Served, GatewayError>> {
    Box::pin(async move {
        let Cached {
            key,
            windows,
            route,
        } = cached;
        // A page known to be too large to share streams straight through.
        if state.cache.is_pass(&key) {
            CacheOutcome::Pass(PassReason::TooLarge).count(&state.metrics);
            return pass(state, &live, parts, route, PassReason::TooLarge).await;
        }

        // A stale page at hand is served at once when the budget is short; without one, the
        // request waits for budget (up to `upstream.rate_limit.max_wait`).
        let at_hand = stored
            .as_ref()
            .is_some_and(|entry| policy::freshness(entry.age(), windows) != Freshness::Dead);
        let ask = match at_hand {
            true => Ask::STALE_AT_HAND,
            false => Ask::CLIENT,
        };
        let (fill, outcome) = fetch_page(state, &live, &parts, cached, directive, ask).await;
        // What this request answers with: its page, or it passes (too large to share, or a page
        // its flight's leader got for its own request only), or the failure.
        let result = match fill {
            Fill::TooLarge => return pass(state, &live, parts, route, PassReason::TooLarge).await,
            Fill::Private(_) if outcome == CacheOutcome::Collapsed => {
                return pass(state, &live, parts, route, PassReason::Private).await
            }
            Fill::Shared(fetched) | Fill::Private(fetched) => Ok(fetched),
            Fill::Failed(error) => Err(error),
        };

        // Held back by the budget or KooDrive's cooldown: the stale page, said why.
        if let (Err(error), Some(entry), true) = (&result, &stored, at_hand) {
            if error.is_rate_limited() {
                let age = entry.age();
                let ttl = policy::ttl_seconds(age, windows);
                tracing::Span::current().record("budget", "stale");
                let outcome = CacheOutcome::StaleRateLimited { ttl };
                return Ok(from_entry(state, entry, age, outcome));
            }
        }
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
            if policy::freshness(age, windows) != Freshness::Dead {
                let ttl = policy::ttl_seconds(age, windows);
                let outcome = CacheOutcome::StaleIfError {
                    ttl,
                    upstream: upstream_status,
                };
                return Ok(from_entry(state, entry, age, outcome));
            }
        }
        match result {
            Ok(fetched) => {
                // Moved out when this request holds the only reference (a page nobody else
                // waits for: no-store, no-cache, a flight of one), copied otherwise.
                let page = Arc::try_unwrap(fetched).map_or_else(|f| f.page.clone(), |f| f.page);
                let mut response = page.into_response();
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
    cached: Cached,
    directive: Directive,
    ask: Ask,
) -> (Fill, CacheOutcome) {
    let Cached {
        key,
        windows,
        route,
    } = cached;
    let span = tracing::Span::current;
    let fetch = || fetcher(state, Arc::clone(live), parts, span(), route, ask);
    let max_wait = state.upstream.timeout() + WAIT_MARGIN;
    match directive {
        Directive::Normal => {
            let (flight, role) = state
                .cache
                .collapse(key, windows, fetch(), &state.admission);
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
    route: Route,
    ask: Ask,
) -> Boxed<'static, Result<Page, GatewayError>> {
    let state = Arc::clone(state);
    let uri = parts.uri.clone();
    // The page is shared by every request with its key, so it is fetched with only what the key
    // holds (and what the gateway adds: the trace id here, credentials when sent). So neither a
    // caller's validators or range (a 304 or a 206 the others never asked for; nginx and Varnish
    // drop these from a cache fill too) nor a cookie or a look-alike of an identity header
    // reaches KooDrive.
    // Sized for the credentials too, added when it is sent.
    let mut headers = HeaderMap::with_capacity(KEYED_HEADERS.len() + 2 + ADDED_HEADERS);
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
                route,
                method: Method::GET,
                uri: &uri,
                headers,
                body: body::empty(),
                body_sha256: None,
                ask,
            };
            let response = state.upstream.exchange(&live.auth, outbound).await?;
            let rule = live.rule(route, &Method::GET, uri.path());
            let limit = live.normalize.max_body;
            let quota = state.upstream.quota();
            respond::page(response, rule, limit, &state.budget, &state.metrics, quota).await
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
    route: Route,
    reason: PassReason,
) -> Result<Served, GatewayError> {
    let outbound = Outbound {
        route,
        method: Method::GET,
        uri: &parts.uri,
        headers: parts.headers,
        body: body::empty(),
        body_sha256: None,
        ask: Ask::CLIENT,
    };
    let response = state.upstream.exchange(&live.auth, outbound).await?;
    let rule = live.rule(route, &Method::GET, parts.uri.path());
    let limit = live.normalize.max_body;
    let quota = state.upstream.quota();
    let mut response =
        respond::shape(response, rule, limit, &state.budget, &state.metrics, quota).await?;
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
