//! Header names the gateway reads or writes, and hop-by-hop stripping (RFC 9110 section 7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_TRACEID: HeaderName = HeaderName::from_static("x-traceid");
pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const X_DATE: HeaderName = HeaderName::from_static("x-date");
pub const LANGUAGE: HeaderName = HeaderName::from_static("language");
/// Marks a response the gateway made itself (linkerd's `l5d-proxy-error` idea); holds the code.
pub const GATEWAY_ERROR: HeaderName = HeaderName::from_static("koodrive-gateway-error");
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HOP_BY_HOP_COUNT: usize = 9;

/// Headers that describe one connection, never the message: not forwarded in either direction.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers that say who a request acts as. The cache key and the signature each read one value
/// of them, so a second value (which KooDrive might read instead) is refused, never forwarded.
/// Host comes once too (RFC 9112 section 3.2).
const IDENTITY: [(HeaderName, &str); 4] = [
    (X_USER_ID, "X-User-Id must be sent at most once"),
    (
        header::AUTHORIZATION,
        "Authorization must be sent at most once",
    ),
    (LANGUAGE, "language must be sent at most once"),
    (header::HOST, "Host must be sent at most once"),
];

/// Why a request's identity is ambiguous: one of the [`IDENTITY`] headers comes more than once.
pub fn repeated_identity(headers: &HeaderMap) -> Option<&'static str> {
    // Each name once, the usual case, is told by two counts without a lookup.
    if headers.len() == headers.keys_len() {
        return None;
    }
    IDENTITY
        .iter()
        .find(|(name, _)| headers.get_all(name).iter().nth(1).is_some())
        .map(|(_, why)| *why)
}

/// The first header whose value starts or ends with a space or tab. HTTP/1 parsers strip such
/// whitespace; HTTP/2 carries it, and RFC 9113 section 8.2.1 calls the message malformed.
pub fn padded_value(headers: &HeaderMap) -> Option<&HeaderName> {
    let padded = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    headers
        .iter()
        .find(|(_, v)| padded(v.as_bytes().first()) || padded(v.as_bytes().last()))
        .map(|(name, _)| name)
}

/// The length a message's `Content-Length` declares, when it is one number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Joins an HTTP/2 request's `cookie` fields into one, as RFC 9113 section 8.2.3 asks before
/// the request goes on over HTTP/1.1.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for cookie in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(cookie.as_bytes());
    }
    // Each part was a valid field value, and "; " is too: so is the whole.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Whether a response's `Transfer-Encoding`, if any, is `chunked` alone: the one coding hyper
/// undoes.
pub fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match codings.next() {
        None => true,
        Some(first) => first.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// Which of `names` a map holds, from one pass over its few names rather than a hashed lookup
/// each (most messages hold none of them).
pub fn present<const N: usize>(headers: &HeaderMap, names: &[HeaderName; N]) -> [bool; N] {
    let mut present = [false; N];
    for name in headers.keys() {
        if let Some(at) = names.iter().position(|n| n == name) {
            present[at] = true;
        }
    }
    present
}

/// Removes those of `names` the map holds (see [`present`]).
pub fn remove_present<const N: usize>(headers: &mut HeaderMap, names: &[HeaderName; N]) {
    let present = present(headers, names);
    for (name, _) in names.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few names says which of the fixed list are present; most messages carry
    // none. Only those present are removed (KooDrive's usual `Connection: keep-alive` is one
    // removal, not nine hashed ones).
    let present = present(headers, &HOP_BY_HOP);
    if !present.contains(&true) {
        return;
    }
    // The headers `Connection` names, by its tokens compared case-blind with the names present
    // (stored lowercase): usually none, and then nothing is allocated.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter(|v| v.to_str().is_ok())
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|token| {
            let token = token.trim_ascii();
            headers
                .keys()
                .find(|name| token.eq_ignore_ascii_case(name.as_str().as_bytes()))
                .cloned()
        })
        .collect();
    // In the order the answer's remaining headers were always left in: the named ones, then the
    // fixed list's.
    for name in named {
        headers.remove(name);
    }
    for (hop, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(hop);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_a_repeated_identity_header_is_ambiguous() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.append(X_USER_ID, HeaderValue::from_static("1001"));
        assert_eq!(repeated_identity(&headers), None);
        headers.append(X_USER_ID, HeaderValue::from_static("1002"));
        assert_eq!(
            repeated_identity(&headers),
            Some("X-User-Id must be sent at most once")
        );
    }

    #[test]
    fn a_value_with_spaces_or_tabs_around_it_is_padded() {
        for (value, padded) in [
            ("42", false),
            ("4 2", false),
            ("\t42 ", true),
            (" fr-FR", true),
            ("Bearer tok ", true),
            ("x\t", true),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("accept", HeaderValue::from_static("a"));
            headers.insert(X_USER_ID, HeaderValue::from_str(value).unwrap());
            let found = padded_value(&headers).map(HeaderName::as_str);
            assert_eq!(found, padded.then_some("x-user-id"), "{value:?}");
        }
    }

    #[test]
    fn strips_listed_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop , upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-secret-hop", "1"),
            ("x-end-to-end", "kept"),
            ("content-type", "application/json"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-end-to-end", "content-type"]);
    }

    #[test]
    fn any_one_hop_by_hop_header_leads_to_stripping() {
        for name in HOP_BY_HOP {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            headers.insert(name.clone(), HeaderValue::from_static("x-named"));
            headers.insert("x-named", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut headers);
            let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
            let expected: &[&str] = if name == header::CONNECTION {
                &["content-type"]
            } else {
                &["content-type", "x-named"]
            };
            assert_eq!(left, expected, "{name}");
        }
    }
}
