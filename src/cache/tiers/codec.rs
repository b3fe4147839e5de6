//! A page as the shared tier stores it: what the first tier keeps (status, headers, normalized
//! body) and when it was fetched, so that `Age` and the stale windows work the same whichever
//! tier answered. `[version][fetched: u64 ms][status: u16][headers: u16]`, then each header as
//! `[name len: u16][name][value len: u16][value]`, then the body (big endian). The fleet seals
//! it (see `fleet`): decoding only reads what a sidecar of this fleet wrote.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::entry_fetched_at;
use crate::cache::{Entry, Page};
use crate::normalize::Code;

const VERSION: u8 = 1;

pub fn encode(page: &Page, fetched_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.body.len());
    out.push(VERSION);
    out.extend_from_slice(&fetched_ms.to_be_bytes());
    out.extend_from_slice(&page.status.as_u16().to_be_bytes());
    let headers: Vec<_> = page
        .headers
        .iter()
        .filter(|(name, value)| name.as_str().len() <= 0xffff && value.len() <= 0xffff)
        .collect();
    let count = u16::try_from(headers.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in headers.into_iter().take(usize::from(count)) {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            out.extend_from_slice(&u16::try_from(part.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out.extend_from_slice(&page.body);
    out
}

pub fn decode(bytes: &[u8]) -> Option<Entry> {
    let mut reader = Reader(bytes);
    if reader.take(1)? != [VERSION] {
        return None;
    }
    let fetched_ms = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
    let status = StatusCode::from_u16(reader.u16()?).ok()?;
    let count = reader.u16()?;
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = reader.u16()?;
        let name = HeaderName::from_bytes(reader.take(usize::from(name_len))?).ok()?;
        let value_len = reader.u16()?;
        let value = reader.take(usize::from(value_len))?;
        headers.append(name, HeaderValue::from_bytes(value).ok()?);
    }
    let page = Page {
        status,
        headers,
        body: Bytes::copy_from_slice(reader.0),
        code: Code::Unknown,
    };
    entry_fetched_at(&page, fetched_ms)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_back_as_written_and_junk_does_not_read() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let page = Page {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(br#"{"code":"0"}"#),
            code: Code::Unknown,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let fetched = u64::try_from(now.as_millis()).unwrap_or(0) - 2_000;
        let bytes = encode(&page, fetched);
        let entry = decode(&bytes).map(|e| (e.age().as_secs(), e.to_page()));
        let Some((age, back)) = entry else {
            panic!("the page did not read back");
        };
        assert!((2..=3).contains(&age), "age counts from the fetch: {age}");
        assert_eq!(back.body, page.body);
        assert_eq!(back.headers.get("x-kept"), page.headers.get("x-kept"));
        for cut in [0, 1, 9, 12, 14] {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
    }
}
