//! `GET /koodrive/ose/v1/task/list`: validated, then served from the cache when it can be,
//! otherwise fetched once for all concurrent identical requests, normalized and stored; stale
//! pages cover for KooDrive while it is refreshed or failing.

use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, AGE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Uri};
use tracing::Instrument;

use crate::body;
use crate::cache::policy::{self, Directive, Freshness, CACHE_NAME};
use crate::cache::{Entry, Fetched, Page, Role, TaskListQuery};
use crate::error::GatewayError;
use crate::headers::CACHE_STATUS;
use crate::metrics::ReasonLabels;
use crate::pipeline::{self, CacheLabel, Live, Served, State};
use crate::respond;

/// Extra time a collapsed waiter allows beyond the upstream timeout before giving up.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

pub async fn serve(state: &Arc<State>, parts: Parts) -> Result<Served, GatewayError> {
    // Validate before any cache or upstream work.
    let query = TaskListQuery::parse(parts.uri.query())?;
    // The key binds the page to the identity that asked, after credential precedence.
    let live = state.live.load_full();
    let identity = live.auth.identity(&parts.headers);
    let key = state.cache.key(&identity, &query);
    let directive = policy::client_directive(&parts.headers);
    let config = &*state.cache.config();
    // Built only on a miss: a hit never pays for it.
    let fetch = || {
        fetcher(
            state,
            Arc::clone(&live),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    };

    // A stored page: fresh is served as it is; stale-while-revalidate is served while one
    // background refresh runs; older ones are kept for stale-if-error.
    let stored = match directive {
        Directive::Normal => state.cache.get(&key).await,
        Directive::Refresh | Directive::NoStore => None,
    };
    if let Some(entry) = &stored {
        match policy::freshness(entry.age(), config) {
            Freshness::Fresh(_) => {
                record(state, "hit");
                let ttl = policy::ttl_seconds(entry.age(), config);
                return Ok(from_entry(entry, hit_status(ttl), "hit"));
            }
            Freshness::Revalidate => {
                record(state, "stale-while-revalidate");
                state.cache.refresh_in_background(key, fetch());
                let ttl = policy::ttl_seconds(entry.age(), config);
                let status = format!("{CACHE_NAME}; hit; ttl={ttl}; detail=stale-while-revalidate");
                return Ok(from_entry(entry, status, "stale"));
            }
            Freshness::IfError | Freshness::Dead => {}
        }
    }

    // A page known to be too large to share streams straight through.
    if state.cache.is_pass(&key) {
        return pass(state, &live, parts).await;
    }

    // Fetch: collapsed with concurrent identical misses, or on its own when the client asked.
    let max_wait = state.upstream.timeout() + WAIT_MARGIN;
    let (result, forwarded, label) = match directive {
        Directive::Normal => {
            let (result, role) = state.cache.collapse(key, max_wait, fetch()).await;
            let label = match role {
                Role::Leader => "miss",
                Role::Collapsed => "collapsed",
            };
            record(state, label);
            let fwd = match (role, &result) {
                (Role::Collapsed, _) => "fwd=miss; collapsed",
                (Role::Leader, Ok(fetched)) if fetched.stored => "fwd=miss; stored",
                (Role::Leader, _) => "fwd=miss",
            };
            (result, fwd, label)
        }
        Directive::Refresh => {
            record(state, "refresh");
            let result = match fetch().await {
                Ok(page) => {
                    let stored = state.cache.store_if_allowed(key, &page).await;
                    Ok(Arc::new(Fetched { page, stored }))
                }
                Err(e) => Err(Arc::new(e)),
            };
            let fwd = match &result {
                Ok(fetched) if fetched.stored => "fwd=request; stored",
                _ => "fwd=request",
            };
            (result, fwd, "refresh")
        }
        Directive::NoStore => {
            record(state, "bypass");
            let result = fetch().await.map(|page| {
                Arc::new(Fetched {
                    page,
                    stored: false,
                })
            });
            (result.map_err(Arc::new), "fwd=request", "bypass")
        }
    };

    // Too large to share: this request fetches the page itself and streams it through.
    if matches!(&result, Err(error) if error.is_page_too_large()) {
        return pass(state, &live, parts).await;
    }

    // KooDrive failing (not refusing): a stale page within stale-if-error beats the failure.
    let failed_status = match &result {
        Ok(fetched) if policy::upstream_failed(&fetched.page) => Some(Some(fetched.page.status)),
        Err(error) if error.is_upstream_failure() => Some(None),
        _ => None,
    };
    if let (Some(upstream_status), Some(entry)) = (failed_status, &stored) {
        if policy::freshness(entry.age(), config) != Freshness::Dead {
            record(state, "stale-if-error");
            let ttl = policy::ttl_seconds(entry.age(), config);
            let fwd_status =
                upstream_status.map_or(String::new(), |s| format!("; fwd-status={}", s.as_u16()));
            let status =
                format!("{CACHE_NAME}; fwd=miss{fwd_status}; ttl={ttl}; detail=stale-if-error");
            return Ok(from_entry(entry, status, "stale"));
        }
    }
    match result {
        Ok(fetched) => {
            let mut response = fetched.page.to_response();
            set_cache_status(response.headers_mut(), format!("{CACHE_NAME}; {forwarded}"));
            Ok((response, CacheLabel(label)))
        }
        Err(error) => Err(GatewayError::Collapsed(error)),
    }
}

/// The upstream request for one task-list page, as a future that owns everything it needs (it
/// may run in a flight's task after the requesting client is gone). Signed when it is sent.
fn fetcher(
    state: &Arc<State>,
    live: Arc<Live>,
    uri: Uri,
    mut headers: HeaderMap,
) -> impl std::future::Future<Output = Result<Page, GatewayError>> + Send + 'static {
    let state = Arc::clone(state);
    // The stored page is decoded whatever the caller accepts, so ask for what we can decode.
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    async move {
        let response = pipeline::send(
            &state,
            &live,
            Method::GET,
            &uri,
            headers,
            body::empty(),
            None,
        )
        .await?;
        let rule = live.normalize.rules.find(&Method::GET, uri.path());
        respond::page(response, rule, live.normalize.max_body, &state.metrics).await
    }
    .instrument(tracing::Span::current())
}

/// Forwards the request as the client sent it and streams the answer through, normalized only if
/// it turns out to fit after all (a page too large to share or store: Varnish's "pass").
async fn pass(state: &Arc<State>, live: &Live, parts: Parts) -> Result<Served, GatewayError> {
    record(state, "pass");
    let response = pipeline::send(
        state,
        live,
        Method::GET,
        &parts.uri,
        parts.headers,
        body::empty(),
        None,
    )
    .await?;
    let rule = live.normalize.rules.find(&Method::GET, parts.uri.path());
    let limit = live.normalize.max_body;
    let mut response = respond::shape(response, rule, limit, &state.metrics).await?;
    set_cache_status(
        response.headers_mut(),
        format!("{CACHE_NAME}; fwd=bypass; detail=too-large"),
    );
    Ok((response, CacheLabel("pass")))
}

fn from_entry(entry: &Entry, cache_status: String, label: &'static str) -> Served {
    let mut response = entry.to_response();
    let headers = response.headers_mut();
    headers.insert(AGE, HeaderValue::from(entry.age().as_secs()));
    set_cache_status(headers, cache_status);
    (response, CacheLabel(label))
}

/// `Cache-Status` of a fresh hit, built without the formatting machinery (every hit pays it).
fn hit_status(ttl: i64) -> String {
    const PREFIX: &str = "; hit; ttl=";
    let mut status = String::with_capacity(CACHE_NAME.len() + PREFIX.len() + 20);
    status.push_str(CACHE_NAME);
    status.push_str(PREFIX);
    status.push_str(itoa::Buffer::new().format(ttl));
    status
}

fn set_cache_status(headers: &mut HeaderMap, value: String) {
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(CACHE_STATUS, value);
    }
}

/// Counts what the cache did (the access log reads it from the response).
fn record(state: &State, what: &'static str) {
    let metrics = &state.metrics;
    match what {
        "hit" => metrics.cache_hits.inc(),
        "collapsed" => metrics.cache_collapsed.inc(),
        "stale-while-revalidate" | "stale-if-error" => metrics
            .cache_stale_served
            .get_or_create(&ReasonLabels { reason: what })
            .inc(),
        _ => metrics.cache_misses.inc(),
    };
}
