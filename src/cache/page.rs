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
    pub fn to_response(&self) -> Response<Body> {
        let mut response = Response::new(body::full(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
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
    /// Stores a compact copy: header values parsed by hyper are slices of the connection's
    /// whole read buffer, and a body may sit in a larger allocation; copying both keeps an
    /// entry's memory to what the weigher counts. `Date` is dropped (the server sets its own).
    pub fn new(page: Page) -> Entry {
        let mut headers = HeaderMap::with_capacity(page.headers.len());
        for (name, value) in &page.headers {
            if name == header::DATE {
                continue;
            }
            if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), copy);
            }
        }
        Entry {
            page: Page {
                status: page.status,
                headers,
                body: Bytes::copy_from_slice(&page.body),
            },
            stored_at: Instant::now(),
        }
    }

    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }
}
