//! A whole upstream response, normalized and buffered: what a flight produces, what the cache
//! stores, and what a hit serves by cloning `Bytes` and headers, with no JSON work.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use crate::body::{self, Body};

#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Page {
    /// The page as a response. A page's `Content-Length`, when it has one, is its body's length
    /// (normalization and storing set it); one is added when it is missing.
    pub fn to_response(&self) -> Response<Body> {
        let mut response = Response::new(body::full(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        if !self.headers.contains_key(header::CONTENT_LENGTH) {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        response
    }

    /// Bytes this page costs in the cache: body, headers, key and bookkeeping.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        u32::try_from(self.body.len() + headers + 32 + 160).unwrap_or(u32::MAX)
    }
}

/// A stored page and when it was stored.
#[derive(Debug)]
pub struct Entry {
    pub page: Page,
    pub stored_at: Instant,
}

impl Entry {
    /// Stores a compact copy in one allocation: the body followed by the kept header values
    /// (hyper's header values point into the connection's whole 8 KiB read buffer, and a body
    /// may sit in a larger allocation). Headers that describe one response rather than the page
    /// are dropped: `Date` and `Server` (the server sets its own) and `ETag`/`Accept-Ranges`,
    /// which describe KooDrive's bytes, not the normalized ones. `Content-Length` is written
    /// once, here, so that a hit does not format it.
    pub fn new(page: Page) -> Entry {
        const DROPPED: [header::HeaderName; 5] = [
            header::DATE,
            header::SERVER,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::ACCEPT_RANGES,
        ];
        let kept: Vec<_> = page
            .headers
            .iter()
            .filter(|(name, _)| !DROPPED.contains(name))
            .collect();
        let values: usize = kept.iter().map(|(_, v)| v.len()).sum();
        let mut buffer = bytes::BytesMut::with_capacity(page.body.len() + values);
        buffer.extend_from_slice(&page.body);
        for (_, value) in &kept {
            buffer.extend_from_slice(value.as_bytes());
        }
        let buffer = buffer.freeze();
        let mut headers = HeaderMap::with_capacity(kept.len() + 1);
        let mut at = page.body.len();
        for (name, value) in &kept {
            let end = at + value.len();
            if let Ok(shared) = HeaderValue::from_maybe_shared(buffer.slice(at..end)) {
                headers.append((*name).clone(), shared);
            }
            at = end;
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(page.body.len()));
        Entry {
            page: Page {
                status: page.status,
                headers,
                body: buffer.slice(..page.body.len()),
            },
            stored_at: Instant::now(),
        }
    }

    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }
}

#[cfg(test)]
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
        };
        let entry = Entry::new(page);
        assert_eq!(entry.page.body, r#"{"code":"0"}"#);
        let kept: Vec<(&str, &[u8])> = entry
            .page
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
        let response = entry.page.to_response();
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "12");
    }
}
