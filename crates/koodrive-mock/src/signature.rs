//! KooDrive's app signature, written from the published algorithm (docs/koodrive-api.md) on its
//! own rather than shared with the gateway's signer: the mock stands in for KooDrive, so a
//! gateway signer that agrees with it agrees with a second reading of the docs, not with itself.
//!
//! ```
//! use koodrive_mock::signature::{authorization, SignedRequest};
//!
//! let headers = [("host", "mock.local"), ("x-date", "20240909T033325Z"), ("x-user-id", "42")];
//! let request = SignedRequest { method: "GET", path: "/t", query: None, headers: &headers, body: b"" };
//! let value = authorization("app-1", b"secret", &request);
//! assert!(value.starts_with("HMAC-SHA256 AppId=app-1,SignedHeaders=host;x-date;x-user-id,Signature="));
//! ```

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The word that opens the string to sign and the `Authorization` value.
pub const ALGORITHM: &str = "HMAC-SHA256";

/// What a signature covers, as the request travels: the path still percent-encoded, the query
/// raw (without `?`), the signed headers with their values and the body.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Lower-case hex HMAC-SHA256, keyed with the app secret, of `HMAC-SHA256\n<hex sha256 of the
/// canonical request>`.
pub fn signature(secret: &[u8], request: &SignedRequest<'_>) -> String {
    let digest = hex::encode(Sha256::digest(canonical_request(request).as_bytes()));
    let to_sign = format!("{ALGORITHM}\n{digest}");
    // HMAC-SHA256 takes a key of any length: the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` value a client sends for `request`.
pub fn authorization(app_id: &str, secret: &[u8], request: &SignedRequest<'_>) -> String {
    format!(
        "{ALGORITHM} AppId={app_id},SignedHeaders={},Signature={}",
        header_names(request.headers),
        signature(secret, request)
    )
}

/// `HMAC-SHA256 AppId=..,SignedHeaders=..,Signature=..` split into its three fields; `None`
/// when a field is missing or unknown.
pub fn parse_authorization(value: &str) -> Option<(&str, &str, &str)> {
    let fields = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut app_id, mut names, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (name, value) = field.trim().split_once('=')?;
        let slot = match name {
            "AppId" => &mut app_id,
            "SignedHeaders" => &mut names,
            "Signature" => &mut signature,
            _ => return None,
        };
        *slot = Some(value);
    }
    Some((app_id?, names?, signature?))
}

/// Method, path, query, headers, header names and body hash, one per line.
pub fn canonical_request(request: &SignedRequest<'_>) -> String {
    let mut headers: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    headers.sort();
    let header_lines: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    [
        request.method.to_ascii_uppercase(),
        canonical_path(request.path),
        canonical_query(request.query.unwrap_or("")),
        header_lines,
        header_names(request.headers),
        hex::encode(Sha256::digest(request.body)),
    ]
    .join("\n")
}

/// Each segment decoded then re-encoded; a `/` is added at the end for the signature only.
fn canonical_path(path: &str) -> String {
    let mut out: Vec<String> = path.split('/').map(|s| encode(&decode(s))).collect();
    if out.last().is_some_and(|last| !last.is_empty()) {
        out.push(String::new());
    }
    out.join("/")
}

/// Decoded pairs (`+` is a space), re-encoded, sorted by name then value as bytes.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                decode(&name.replace('+', " ")),
                decode(&value.replace('+', " ")),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_names(headers: &[(&str, &str)]) -> String {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names.join(";")
}

/// `%XY` sequences to bytes; a `%` not followed by two hex digits stays as it is.
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex_pair = bytes.get(at + 1..at + 3).and_then(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16)
                .ok()
                .filter(|_| pair.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        match (bytes[at], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

/// Keeps `A-Z a-z 0-9 - _ . ~`; every other byte becomes `%XY`, upper-case hex.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"example-app-secret";
    const HEADERS: &[(&str, &str)] = &[
        ("Host", "intl.myhuaweicloud-koodrive.com"),
        ("X-Date", "20240909T033325Z"),
        ("X-User-Id", "1505084218764547200"),
    ];

    fn request<'a>(method: &'a str, path: &'a str, query: Option<&'a str>) -> SignedRequest<'a> {
        SignedRequest {
            method,
            path,
            query,
            headers: HEADERS,
            body: b"",
        }
    }

    #[test]
    fn the_docs_worked_examples() {
        let list = request(
            "GET",
            "/koodrive/ose/v1/task/list",
            Some("taskType=0&status=2&status=1&pageSize=10&pageCursor="),
        );
        assert_eq!(
            canonical_request(&list),
            "GET\n/koodrive/ose/v1/task/list/\npageCursor=&pageSize=10&status=1&status=2&taskType=0\n\
             host:intl.myhuaweicloud-koodrive.com\nx-date:20240909T033325Z\nx-user-id:1505084218764547200\n\n\
             host;x-date;x-user-id\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signature(SECRET, &list),
            "18b94ebf96b0064c9e0d8f7d50cc897a2570372519d7155a6ae991426b2178c9"
        );
        let create = SignedRequest {
            body: br#"{"taskName":"t1","taskType":0}"#,
            ..request("POST", "/koodrive/ose/v1/task/create", None)
        };
        assert_eq!(
            signature(SECRET, &create),
            "6cf1a3d5adc4ef598c74df94933512182c396604a19eacfb94da96123916f170"
        );
    }

    #[test]
    fn paths_and_queries_are_decoded_then_encoded() {
        assert_eq!(
            canonical_path("/files/a b/%e4%bd%a0"),
            "/files/a%20b/%E4%BD%A0/"
        );
        assert_eq!(canonical_path("/files/a%20b/你"), "/files/a%20b/%E4%BD%A0/");
        assert_eq!(canonical_path("/already/ends/"), "/already/ends/");
        assert_eq!(canonical_path("/a%FF%zz%4"), "/a%FF%25zz%254/");
        assert_eq!(
            canonical_query("b=x%2Fy&a=1+2&a=%21&c"),
            "a=%21&a=1%202&b=x%2Fy&c="
        );
        assert_eq!(canonical_query("a=%FF&%FE=1&&"), "a=%FF&%FE=1");
        // Pinned against an independent computation (Python's hmac over the canonical text).
        let odd = request(
            "GET",
            "/koodrive/ose/v1/task/dstUserInfo/a%20b",
            Some("z=1&y=%E4%BD%A0"),
        );
        assert_eq!(
            signature(SECRET, &odd),
            "13ec26aedb2b59f088040f935f318f0d0099b67004e031309ff44c610b448f79"
        );
    }

    #[test]
    fn authorization_round_trips() {
        let value = authorization("app-1", SECRET, &request("GET", "/", None));
        let (app_id, names, sig) = parse_authorization(&value).unwrap_or_default();
        assert_eq!((app_id, names), ("app-1", "host;x-date;x-user-id"));
        assert_eq!(sig, signature(SECRET, &request("GET", "/", None)));
        assert_eq!(parse_authorization("Bearer abc"), None);
        assert_eq!(parse_authorization("HMAC-SHA256 AppId=a,Other=b"), None);
    }
}
