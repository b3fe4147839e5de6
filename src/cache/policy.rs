//! Cache policy as pure functions: what the client asked for, what may be stored, when a page is
//! fresh or stale, what counts as KooDrive failing, and the `Cache-Status` text (RFC 9211).

use std::time::Duration;

use http::header::{CACHE_CONTROL, PRAGMA, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

use super::page::Page;
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

fn directives(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase().replace(' ', ""))
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
        match d.as_str() {
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

pub fn freshness(age: Duration, config: &CacheConfig) -> Freshness {
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

/// How long entries must be kept: past ttl for the longer of the two stale windows.
pub fn retention(config: &CacheConfig) -> Duration {
    config.ttl + config.stale_while_revalidate.max(config.stale_if_error)
}

/// Seconds of freshness left (negative once stale), for `Cache-Status: ...; ttl=`.
pub fn ttl_seconds(age: Duration, config: &CacheConfig) -> i64 {
    let left = config.ttl.as_secs_f64() - age.as_secs_f64();
    left.floor() as i64
}

pub const CACHE_NAME: &str = "koodrive-gateway";

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn config() -> CacheConfig {
        CacheConfig {
            max_bytes: 1 << 20,
            max_entry_bytes: 1000,
            ttl: Duration::from_secs(3),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(60),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn page(status: u16, body: &'static str, pairs: &[(&'static str, &'static str)]) -> Page {
        Page {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers: headers(pairs),
            body: body.into(),
            code: crate::normalize::Code::Unknown,
        }
    }

    #[test]
    fn client_directives() {
        let cases = [
            (vec![], Directive::Normal),
            (vec![("cache-control", "no-cache")], Directive::Refresh),
            (vec![("cache-control", "max-age=0")], Directive::Refresh),
            (
                vec![("cache-control", "Max-Age = 0, foo")],
                Directive::Refresh,
            ),
            (vec![("pragma", "no-cache")], Directive::Refresh),
            (vec![("cache-control", "no-store")], Directive::NoStore),
            (
                vec![("cache-control", "no-cache, no-store")],
                Directive::NoStore,
            ),
            (vec![("cache-control", "max-age=60")], Directive::Normal),
            // Delta-seconds, and the quoted form: zero however it is written.
            (vec![("cache-control", "max-age=00")], Directive::Refresh),
            (vec![("cache-control", "max-age=\"0\"")], Directive::Refresh),
            (vec![("cache-control", "max-age=\"10\"")], Directive::Normal),
            (vec![("cache-control", "max-age=")], Directive::Normal),
            (vec![("cache-control", "max-age=0x0")], Directive::Normal),
            (
                vec![("cache-control", "max-age=99999999999999999999999")],
                Directive::Normal,
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(client_directive(&headers(&pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn only_successful_small_private_free_pages_are_stored() {
        // A page labelled JSON, with `extra` headers besides.
        let json = |status, body, extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![("content-type", "application/json;charset=UTF-8")];
            pairs.extend_from_slice(extra);
            page(status, body, &pairs)
        };
        let ok = r#"{"code":"0","msg":"Success.","taskList":[]}"#;
        assert!(storable(&json(200, ok, &[]), 1000));
        assert!(storable(&json(200, r#"{"code":0}"#, &[]), 1000));
        assert!(!storable(&page(200, ok, &[]), 1000), "not labelled JSON");
        assert!(!storable(
            &page(200, ok, &[("content-type", "text/plain")]),
            1000
        ));
        assert!(!storable(&json(200, ok, &[]), 10), "too large");
        assert!(!storable(&json(201, ok, &[]), 1000));
        assert!(!storable(&json(200, r#"{"code":"13000201"}"#, &[]), 1000));
        assert!(!storable(&json(200, "not json", &[]), 1000));
        assert!(!storable(&json(200, ok, &[("set-cookie", "a=b")]), 1000));
        assert!(!storable(
            &json(200, ok, &[("cache-control", "private, no-store")]),
            1000
        ));
        // Vary: only on what the key holds.
        assert!(storable(
            &json(200, ok, &[("vary", "Accept-Encoding, language")]),
            1000
        ));
        assert!(!storable(
            &json(200, ok, &[("vary", "Accept-Language")]),
            1000
        ));
        assert!(!storable(&json(200, ok, &[("vary", "*")]), 1000));
    }

    #[test]
    fn code_is_read_as_serde_json_reads_it() {
        let nested = |depth: usize| {
            let (open, close) = ("[".repeat(depth), "]".repeat(depth));
            format!(r#"{{"code":0,"x":{open}{close}}}"#).into_bytes()
        };
        // The scan's nesting limit is a tree's; past it serde_json reads the body.
        let (shallow, deep) = (nested(126), nested(127));
        // (body, what the scan says, serde_json agreeing)
        let pinned: &[(&[u8], Option<&str>)] = &[
            (br#"{"code":0}"#, Some("0")),
            (br#"{"code":"0","msg":"Success."}"#, Some("0")),
            (b" {\n \"msg\" : \"x\" ,\t\"code\" : -12 }\r\n", Some("-12")),
            (br#"{"code":"APIG.0308"}"#, Some("APIG.0308")),
            (
                br#"{"code":12345678901234567890123}"#,
                Some("12345678901234567890123"),
            ),
            (br#"{"code":"\u0030"}"#, Some("0")),
            (br#"{"c\u006fde":"0"}"#, Some("0")),
            (br#"{"code":"a\"b"}"#, Some("a\"b")),
            (br#"{"x":{"code":1},"code":"0"}"#, Some("0")),
            (&shallow, Some("0")),
            (&deep, Some("0")),
            (br#"{"code":0,"code":1}"#, None),
            (br#"{"code":null}"#, None),
            (br#"{"code":true}"#, None),
            (br#"{"code":{}}"#, None),
            (br#"{"code":[0]}"#, None),
            (br#"{"x":{"code":0}}"#, None),
            (br#"{"code":0} x"#, None),
            (br#"{"code":0,}"#, None),
            (br#"{"code":01}"#, None),
            (br#"{"code":-}"#, None),
            (br#"{"code":0,"x":"a\qb"}"#, None),
            (b"{\"code\":0,\"x\":\"\x01\"}", None),
            (b"", None),
            (b"\x0c{\"code\":0}", None),
        ];
        for (body, expected) in pinned {
            let what = String::from_utf8_lossy(body);
            assert_eq!(koodrive_code(body).as_deref(), *expected, "{what}");
            assert_eq!(koodrive_code(body), code_by_serde(body), "{what}");
        }
        // Left to serde_json, or read as it reads them.
        let others: &[&[u8]] = &[
            br#"{"code":1.50}"#,
            br#"{"code":1E2}"#,
            br#"{"code":-0}"#,
            br#"[0]"#,
            br#"["0"]"#,
            b"{\"code\":\"0\",\"m\":\"\xff\"}",
            b"{\"code\":\"\xc3\xa9\"}",
        ];
        for body in others {
            let what = String::from_utf8_lossy(body);
            assert_eq!(koodrive_code(body), code_by_serde(body), "{what}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(512)))]

        /// The scan agrees with serde_json on bodies with one byte cut, changed or added.
        #[test]
        fn code_scan_agrees_with_serde_json_on_edited_bodies(
            base in proptest::sample::select(vec![
                r#"{"taskList":[{"taskId":"1","n":[1,{"a":null}]}],"code":"0","msg":"Success."}"#,
                r#" { "code" : 0 , "nextCursor" : "17" } "#,
                r#"{"code":-1.5e3,"msg":"a\"\\b"}"#,
                r#"{"error_code":"APIG.0308","code":"APIG.0308"}"#,
            ]),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            edit in 0..4u8,
            byte in proptest::sample::select(b" \t\n\r{}[],:\"\\/0123456789-+.eEtrufalsncod\x00\x1f\xff".to_vec()),
        ) {
            let mut body = base.as_bytes().to_vec();
            let at = at.index(body.len());
            match edit {
                0 => body.truncate(at),
                1 => body[at] = byte,
                2 => body.insert(at, byte),
                _ => {}
            }
            proptest::prop_assert_eq!(koodrive_code(&body), code_by_serde(&body));
        }
    }

    #[test]
    fn a_code_read_while_normalizing_decides_without_reading_the_body_again() {
        let with_code = |status: u16, body: &'static str, code: Option<&str>| Page {
            code: Code::Known(code.map(Into::into)),
            ..page(status, body, &[("content-type", "application/json")])
        };
        // The body says otherwise: the code read while normalizing is the one that counts.
        assert!(storable(&with_code(200, "{}", Some("0")), 1000));
        assert!(!storable(&with_code(200, r#"{"code":0}"#, None), 1000));
        assert!(!storable(&with_code(200, r#"{"code":0}"#, Some("1")), 1000));
        assert!(upstream_failed(&with_code(400, "{}", Some("APIG.0308"))));
        assert!(!upstream_failed(&with_code(
            400,
            r#"{"code":"APIG.0308"}"#,
            Some("1")
        )));
        // Not read while normalizing: read from the body.
        let unknown = Page {
            code: Code::Unknown,
            ..page(
                200,
                r#"{"code":"0"}"#,
                &[("content-type", "application/json")],
            )
        };
        assert!(storable(&unknown, 1000));
    }

    #[test]
    fn upstream_failures_versus_business_errors() {
        assert!(upstream_failed(&page(500, "{}", &[])));
        assert!(upstream_failed(&page(503, "", &[])));
        assert!(upstream_failed(&page(429, "", &[])));
        assert!(upstream_failed(&page(
            400,
            r#"{"code":"APIG.0308","msg":"throttled"}"#,
            &[]
        )));
        assert!(!upstream_failed(&page(
            400,
            r#"{"code":"13000201","msg":"x"}"#,
            &[]
        )));
        assert!(!upstream_failed(&page(200, r#"{"code":"0"}"#, &[])));
    }

    #[test]
    fn freshness_windows() {
        let c = config();
        let s = Duration::from_secs;
        assert_eq!(freshness(s(0), &c), Freshness::Fresh(s(3)));
        assert_eq!(freshness(s(2), &c), Freshness::Fresh(s(1)));
        assert_eq!(freshness(s(3), &c), Freshness::Revalidate);
        assert_eq!(freshness(s(12), &c), Freshness::Revalidate);
        assert_eq!(freshness(s(13), &c), Freshness::IfError);
        assert_eq!(freshness(s(62), &c), Freshness::IfError);
        assert_eq!(freshness(s(63), &c), Freshness::Dead);
        assert_eq!(retention(&c), s(63));
        assert_eq!(ttl_seconds(Duration::from_millis(500), &c), 2);
        assert_eq!(ttl_seconds(s(5), &c), -2);
    }
}
