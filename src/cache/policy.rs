//! Cache policy as pure functions: what the client asked for, what may be stored, when a page is
//! fresh or stale, what counts as KooDrive failing, and the `Cache-Status` text (RFC 9211).

use std::borrow::Cow;
use std::time::Duration;

use http::header::{CACHE_CONTROL, PRAGMA, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

use super::page::Page;
use crate::config::routes::Windows;
use crate::config::CacheConfig;
use crate::normalize::{Code, Member};

/// What the client's request headers ask of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Use the cache.
    Normal,
    /// `no-cache`, `max-age=0`, `Pragma: no-cache`: fetch fresh, then store.
    Refresh,
    /// `no-store`: fetch fresh, store nothing.
    NoStore,
}

/// Each `Cache-Control` directive, lowercase and without spaces: as it came when it already is
/// (the usual case, nothing allocated), a copy otherwise.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            let d = d.trim();
            match d.bytes().any(|b| b == b' ' || b.is_ascii_uppercase()) {
                false => Cow::Borrowed(d),
                true => Cow::Owned(d.to_ascii_lowercase().replace(' ', "")),
            }
        })
}

/// The seconds of a `max-age` directive: delta-seconds (`0`, `00`), also in the quoted form
/// RFC 9111 asks recipients to accept (`"0"`).
fn max_age(directive: &str) -> Option<u64> {
    let value = directive.strip_prefix("max-age=")?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Past u64, a number of seconds is as good as forever.
    Some(value.parse().unwrap_or(u64::MAX))
}

pub fn client_directive(headers: &HeaderMap) -> Directive {
    let mut directive = Directive::Normal;
    for d in directives(headers) {
        match &*d {
            "no-store" => return Directive::NoStore,
            "no-cache" => directive = Directive::Refresh,
            _ if max_age(&d) == Some(0) => directive = Directive::Refresh,
            _ => {}
        }
    }
    let pragma = headers
        .get(PRAGMA)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("no-cache"));
    if pragma && !headers.contains_key(CACHE_CONTROL) {
        directive = Directive::Refresh;
    }
    directive
}

/// JSON, 200, KooDrive `code` 0, small enough, not private to the request that fetched it, and
/// the upstream did not forbid storing.
pub fn storable(page: &Page, max_entry_bytes: u64) -> bool {
    // Labelled JSON, so normalized: a page in KooDrive's wire shape is never kept to be served
    // again (it passes through once, counted as a `not_json` fallback).
    crate::normalize::is_json(&page.headers)
        && page.status == StatusCode::OK
        && page.body.len() as u64 <= max_entry_bytes
        && !private_to_its_request(page)
        && !directives(&page.headers).any(|d| d == "no-store")
        && code_is(page, "0")
}

/// Request headers the key already separates pages by (`Accept-Encoding`: the fetch always asks
/// for gzip, and stored pages are decoded).
const KEYED: [&str; 4] = ["x-user-id", "authorization", "language", "accept-encoding"];

/// Whether a page answers its own request only, so that neither the cache nor the requests that
/// joined its fetch may have it: it sets a cookie, or it varies (RFC 9111 section 4.1) on a
/// request header the key does not hold, `Vary: *` included. (nginx and Varnish send the waiters
/// of such a fetch to KooDrive themselves.)
pub fn private_to_its_request(page: &Page) -> bool {
    page.headers.contains_key(SET_COOKIE)
        || page
            .headers
            .get_all(VARY)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("*").split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .any(|name| !KEYED.iter().any(|k| k.eq_ignore_ascii_case(name)))
}

/// Whether a page's top-level `code` is `code`: as normalizing read it, or read from its body.
fn code_is(page: &Page, code: &str) -> bool {
    match &page.code {
        Code::Known(known) => known.as_deref() == Some(code),
        Code::Unknown => koodrive_code(&page.body).as_deref() == Some(code),
    }
}

/// The top-level `code` of a JSON body, as text (`0` and `"0"` alike), as serde_json reads it:
/// `None` for a body that is not JSON. Read by the normalizer's checked scan; serde_json reads
/// what the scan leaves to it (escapes, fractions).
pub fn koodrive_code(body: &[u8]) -> Option<String> {
    let raw = match crate::normalize::top_level_member(body, b"code") {
        Member::Once(raw) => raw,
        Member::Absent | Member::Invalid => return None,
        Member::Unsure => return code_by_serde(body),
    };
    match crate::normalize::code_of(raw) {
        Code::Known(code) => code.map(String::from),
        Code::Unknown => code_by_serde(body),
    }
}

/// [`koodrive_code`] by serde_json's own reading of the whole body.
fn code_by_serde(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Coded {
        code: Option<serde_json::Value>,
    }
    let coded: Coded = serde_json::from_slice(body).ok()?;
    match coded.code? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// KooDrive (or the API gateway in front of it) failing, as opposed to refusing a bad request:
/// 5xx, 429, or the API gateway's throttling code.
pub fn upstream_failed(page: &Page) -> bool {
    page.status.is_server_error()
        || page.status == StatusCode::TOO_MANY_REQUESTS
        || code_is(page, "APIG.0308")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it; this much freshness is left.
    Fresh(Duration),
    /// Past ttl, within stale-while-revalidate: serve it and refresh in the background.
    Revalidate,
    /// Past both, but usable if KooDrive fails (stale-if-error).
    IfError,
    /// Too old for anything.
    Dead,
}

/// Where `age` falls in a route's windows (the task list's `[cache]`, or a route's).
pub fn freshness(age: Duration, config: Windows) -> Freshness {
    if age < config.ttl {
        Freshness::Fresh(config.ttl - age)
    } else if age < config.ttl + config.stale_while_revalidate {
        Freshness::Revalidate
    } else if age < config.ttl + config.stale_if_error {
        Freshness::IfError
    } else {
        Freshness::Dead
    }
}

/// How long entries must be kept: past ttl for the longer of the two stale windows, for the
/// route that keeps its entries longest.
pub fn retention(config: &CacheConfig) -> Duration {
    let keeps = |w: Windows| w.ttl + w.stale_while_revalidate.max(w.stale_if_error);
    let routes = config.routes.iter().map(|route| keeps(route.windows));
    routes.fold(keeps(config.windows()), Duration::max)
}

/// Seconds of freshness left (negative once stale), for `Cache-Status: ...; ttl=`.
pub fn ttl_seconds(age: Duration, config: Windows) -> i64 {
    let left = config.ttl.as_secs_f64() - age.as_secs_f64();
    left.floor() as i64
}

/// The cache's name in `Cache-Status`, as a literal for the values made at compile time.
macro_rules! cache_name {
    () => {
        "koodrive-gateway"
    };
}
pub(crate) use cache_name;

pub const CACHE_NAME: &str = cache_name!();

#[cfg(test)]
mod tests;
