//! A whole upstream response, normalized and buffered: what a flight produces, what the cache
//! stores, and what a hit serves by cloning `Bytes` and headers, with no JSON work.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use crate::body::{self, Body};
use crate::normalize::Code;

#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body's top-level `code` when normalizing read it; [`Code::Unknown`] otherwise (the
    /// cache policy then reads the body).
    pub code: Code,
}

impl Page {
    /// The page as a response. A page's `Content-Length`, when it has one, is its body's length
    /// (normalization and storing set it); one is added when it is missing.
    pub fn into_response(self) -> Response<Body> {
        let len = self.body.len();
        let mut response = Response::new(body::full(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if !response.headers().contains_key(header::CONTENT_LENGTH) {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// Headers a hit adds to a stored page's own: `Age`, `Cache-Status` and `X-Traceid`.
const ADDED_ON_HIT: usize = 3;

/// Header names stored pages commonly carry: stored as their index here (with [`KNOWN_NAME`]
/// set) rather than spelled out, so that a hit takes them as they are instead of parsing them.
const KNOWN_NAMES: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CACHE_CONTROL,
    header::VARY,
    header::EXPIRES,
    header::LAST_MODIFIED,
];

/// Marks an encoded name that is an index into [`KNOWN_NAMES`], not a length.
const KNOWN_NAME: u16 = 0x8000;

/// Where a name is in [`KNOWN_NAMES`], if it is.
fn known_index(name: &HeaderName) -> Option<u16> {
    let index = KNOWN_NAMES.iter().position(|known| known == name)?;
    u16::try_from(index).ok()
}

/// A header name as a stored page spells it: not at all when it is a known one.
fn spelled(name: &HeaderName) -> &str {
    match known_index(name) {
        Some(_) => "",
        None => name.as_str(),
    }
}

/// A stored page in (at most) two allocations: `head` holds its kept headers, encoded, then as
/// much of its body as fills an allocator size class exactly; `tail` holds the rest. Allocators
/// round a request up to a size class, four per doubling in mimalloc (and jemalloc): 2,048,
/// 2,560, 3,072, 3,584, 4,096 bytes... A 2,176-byte page in one buffer would cost 2,560; as
/// 2,048 + 128 it costs what it holds. A hit rebuilds the headers (names parsed, values sliced
/// out of `head`) and sends the body as its two pieces, in the same vectored write.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Each kept header as `[name: u16][value length: u16][name, unless known][value]` (big
    /// endian; `name` is a length, or `KNOWN_NAME` plus an index into `KNOWN_NAMES`), then the
    /// body's first bytes from `body_at`.
    head: Bytes,
    tail: Bytes,
    body_at: u32,
    headers: u16,
    status: StatusCode,
    /// When the request that fetched the page was sent: its age counts from then.
    requested_at: Instant,
    /// Read from the fleet's shared tier (Redis) by this lookup, not found in the first tier.
    shared: bool,
}

/// The largest allocator size class not above `len` (below 64 bytes, classes are 8 bytes apart
/// and rounding wastes little): `len` with all but its three highest bits cleared.
fn size_class_floor(len: usize) -> usize {
    if len < 64 {
        return len;
    }
    let step = 1 << (usize::BITS - 3 - len.leading_zeros());
    len & !(step - 1)
}

impl Entry {
    /// Encodes a page for storing. Headers that describe one response rather than the page are
    /// dropped: `Date` and `Server` (the server sets its own) and `ETag`/`Accept-Ranges`, which
    /// describe KooDrive's bytes, not the normalized ones. `Content-Length` is written once, here,
    /// so that a hit does not format it. `None` when a header is too long to encode.
    pub fn new(page: &Page, requested_at: Instant) -> Option<Entry> {
        const DROPPED: [HeaderName; 5] = [
            header::DATE,
            header::SERVER,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::ACCEPT_RANGES,
        ];
        let length = HeaderValue::from(page.body.len());
        let kept = || {
            page.headers
                .iter()
                .filter(|(name, _)| !DROPPED.contains(name))
                .chain([(&header::CONTENT_LENGTH, &length)])
        };
        let encoded: usize = kept().map(|(n, v)| 4 + spelled(n).len() + v.len()).sum();
        let cut = size_class_floor(encoded + page.body.len()).max(encoded) - encoded;
        let mut head = BytesMut::with_capacity(encoded + cut);
        let mut headers: u16 = 0;
        for (name, value) in kept() {
            let known = known_index(name);
            let tag = match known {
                Some(index) => KNOWN_NAME | index,
                None => u16::try_from(name.as_str().len())
                    .ok()
                    .filter(|len| len & KNOWN_NAME == 0)?,
            };
            head.put_u16(tag);
            head.put_u16(u16::try_from(value.len()).ok()?);
            if known.is_none() {
                head.put_slice(name.as_str().as_bytes());
            }
            head.put_slice(value.as_bytes());
            headers = headers.checked_add(1)?;
        }
        let body_at = u32::try_from(head.len()).ok()?;
        let (first, rest) = page.body.split_at(cut);
        head.put_slice(first);
        Some(Entry {
            head: head.freeze(),
            tail: Bytes::copy_from_slice(rest),
            body_at,
            headers,
            status: page.status,
            requested_at,
            shared: false,
        })
    }

    /// The same entry, marked as read from the shared tier.
    pub fn from_shared_tier(self) -> Entry {
        Entry {
            shared: true,
            ..self
        }
    }

    /// Whether this lookup read the entry from the shared tier.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The stored page as a response, with room for the headers a hit adds.
    pub fn to_response(&self) -> Response<Body> {
        let first = self.head.slice(self.body_at as usize..);
        let mut response = Response::new(body::two_pieces(first, self.tail.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.header_map(ADDED_ON_HIT);
        response
    }

    /// The stored page as a page, its body in one piece (for a flight that finds one just
    /// stored).
    pub fn to_page(&self) -> Page {
        let first = &self.head[self.body_at as usize..];
        Page {
            status: self.status,
            headers: self.header_map(0),
            body: [first, &self.tail].concat().into(),
            code: Code::Unknown,
        }
    }

    fn header_map(&self, room: usize) -> HeaderMap {
        // A HeaderMap that grows rehashes: size it once (a handful, bounded well below its limit).
        let mut map = HeaderMap::with_capacity((usize::from(self.headers) + room).min(64));
        let mut at = 0;
        while let Some((name, value, next)) = self.header_at(at) {
            map.append(name, value);
            at = next;
        }
        map
    }

    /// The header encoded at `at` and where the next one starts; `None` at the body.
    fn header_at(&self, at: usize) -> Option<(HeaderName, HeaderValue, usize)> {
        let end = self.body_at as usize;
        let lengths = self.head.get(at..end)?.first_chunk::<4>()?;
        let tag = u16::from_be_bytes([lengths[0], lengths[1]]);
        let value_len = usize::from(u16::from_be_bytes([lengths[2], lengths[3]]));
        let name_at = at + 4;
        let (name, value_at) = match tag & KNOWN_NAME {
            0 => {
                let value_at = name_at + usize::from(tag);
                let name = HeaderName::from_bytes(self.head.get(name_at..value_at)?).ok()?;
                (name, value_at)
            }
            _ => {
                let known = KNOWN_NAMES.get(usize::from(tag & !KNOWN_NAME))?;
                (known.clone(), name_at)
            }
        };
        let next = value_at + value_len;
        if next > end {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(self.head.slice(value_at..next)).ok()?;
        Some((name, value, next))
    }

    /// When the request that fetched the page was sent.
    pub fn requested_at(&self) -> Instant {
        self.requested_at
    }

    /// Bytes this entry costs in the cache: its pieces, key (32), this record (88) and moka's
    /// bookkeeping (400; how it was found is in bench/RESULTS.md).
    pub fn weight(&self) -> u32 {
        u32::try_from(self.head.len() + self.tail.len() + 32 + 88 + 400).unwrap_or(u32::MAX)
    }

    pub fn age(&self) -> Duration {
        self.requested_at.elapsed()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_page_keeps_its_bytes_and_drops_per_response_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("date", "Sun, 29 Nov 2026 05:00:00 GMT"),
            ("etag", "\"upstream-bytes\""),
            ("server", "koodrive"),
            ("x-kept", "1"),
            ("x-kept", "2"),
        ] {
            headers.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let page = Page {
            status: http::StatusCode::OK,
            headers,
            body: Bytes::from_static(br#"{"code":"0"}"#),
            code: crate::normalize::Code::Unknown,
        };
        let entry = Entry::new(&page, Instant::now()).expect("encodable");
        let stored = entry.to_page();
        assert_eq!(stored.status, http::StatusCode::OK);
        assert_eq!(stored.body, r#"{"code":"0"}"#);
        let kept: Vec<(&str, &[u8])> = stored
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            kept,
            [
                ("content-type", &b"application/json"[..]),
                ("x-kept", b"1"),
                ("x-kept", b"2"),
                ("content-length", b"12")
            ]
        );
        let response = entry.to_response();
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "12");
        assert_eq!(response.headers().len(), 4);
    }

    #[test]
    fn size_classes_keep_the_three_highest_bits() {
        for (len, class) in [
            (0, 0),
            (63, 63),
            (64, 64),
            (100, 96),
            (2048, 2048),
            (2176, 2048),
            (2560, 2560),
            (3000, 2560),
            (4095, 3584),
            (1 << 20, 1 << 20),
        ] {
            assert_eq!(size_class_floor(len), class, "{len}");
        }
    }

    #[tokio::test]
    async fn a_page_is_stored_in_size_class_pieces_and_served_whole() {
        use http_body_util::BodyExt;

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Headers encode to 4 + 16 and 4 + 4 bytes (28: both names are known ones, stored as an
        // index), so a body of 2,148 makes the whole 2,176: 2,048 in the head, 128 in the tail.
        let body: Vec<u8> = (0..2148u32).map(|i| b'a' + (i % 26) as u8).collect();
        let page = Page {
            status: http::StatusCode::OK,
            headers,
            body: Bytes::from(body.clone()),
            code: crate::normalize::Code::Unknown,
        };
        let entry = Entry::new(&page, Instant::now()).expect("encodable");
        assert_eq!((entry.head.len(), entry.tail.len()), (2048, 128));
        assert_eq!(entry.to_page().body, body);
        let response = entry.to_response();
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "2148");
        let served = response.into_body().collect().await.expect("buffered");
        assert_eq!(served.to_bytes(), body);
    }

    #[test]
    fn a_header_too_long_to_encode_is_not_stored() {
        let mut headers = HeaderMap::new();
        let long = "v".repeat(usize::from(u16::MAX) + 1);
        headers.insert(
            "x-long",
            HeaderValue::from_str(&long).expect("visible ASCII"),
        );
        let page = Page {
            status: http::StatusCode::OK,
            headers,
            body: Bytes::from_static(b"{}"),
            code: crate::normalize::Code::Unknown,
        };
        assert!(Entry::new(&page, Instant::now()).is_none());
    }
}
