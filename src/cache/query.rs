//! The task-list query: validated before any cache or upstream work, then written in one
//! canonical form so that equal queries share one cache entry.
//!
//! `status=2&status=1`, `status=1,2` and `status=1&status=2&pageSize=100` are the same query:
//! parameters sorted, status a sorted set, `pageSize` defaulted to 100, an empty `pageCursor`
//! the same as none.

use std::collections::BTreeSet;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::GatewayError;

pub const MAX_PAGE_SIZE: u32 = 100;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskListQuery {
    pub task_type: Option<i64>,
    pub status: BTreeSet<u8>,
    pub page_size: u32,
    pub page_cursor: Option<i64>,
    /// Parameters KooDrive may know and we do not: kept, sorted, as part of the key.
    pub other: Vec<(String, String)>,
}

fn bad(param: &str, value: &str, allowed: &'static str) -> GatewayError {
    GatewayError::BadQuery {
        param: param.to_owned(),
        value: value.chars().take(64).collect(),
        allowed,
    }
}

/// Decodes one query component strictly: `+` is a space, `%XY` must be two hex digits, and the
/// result must be UTF-8.
fn decode(raw: &str) -> Result<String, GatewayError> {
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad("query", raw, "well-formed percent-encoding"));
        }
    }
    let plus_as_space = raw.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("query", raw, "UTF-8 text"))
}

fn once(seen: &mut bool, param: &str, value: &str) -> Result<(), GatewayError> {
    if std::mem::replace(seen, true) {
        return Err(bad(param, value, "at most one value"));
    }
    Ok(())
}

impl TaskListQuery {
    pub fn parse(query: Option<&str>) -> Result<TaskListQuery, GatewayError> {
        let mut parsed = TaskListQuery {
            task_type: None,
            status: BTreeSet::new(),
            page_size: MAX_PAGE_SIZE,
            page_cursor: None,
            other: Vec::new(),
        };
        let (mut seen_type, mut seen_size, mut seen_cursor) = (false, false, false);
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name)?;
            let value = decode(raw_value)?;
            match name.as_str() {
                "taskType" => {
                    once(&mut seen_type, "taskType", &value)?;
                    let n = value
                        .parse()
                        .map_err(|_| bad("taskType", &value, "an integer"))?;
                    parsed.task_type = Some(n);
                }
                "status" => {
                    for part in value.split(',') {
                        let s = part
                            .trim()
                            .parse::<u8>()
                            .ok()
                            .filter(|s| *s <= 3)
                            .ok_or_else(|| {
                                bad(
                                    "status",
                                    &value,
                                    "integers 0 to 3, repeated or comma-separated",
                                )
                            })?;
                        parsed.status.insert(s);
                    }
                }
                "pageSize" => {
                    once(&mut seen_size, "pageSize", &value)?;
                    parsed.page_size = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or_else(|| bad("pageSize", &value, "an integer from 1 to 100"))?;
                }
                "pageCursor" => {
                    once(&mut seen_cursor, "pageCursor", &value)?;
                    if !value.is_empty() {
                        let n = value.parse().map_err(|_| {
                            bad(
                                "pageCursor",
                                &value,
                                "an integer, or empty for the first page",
                            )
                        })?;
                        parsed.page_cursor = Some(n);
                    }
                }
                _ => parsed.other.push((name, value)),
            }
        }
        parsed.other.sort();
        Ok(parsed)
    }

    /// The canonical text of the query: the cache key's query part.
    pub fn canonical(&self) -> String {
        use std::fmt::Write;
        // The known parameters as text, then every pair sorted by name and value; written into
        // one string (this runs on every task-list request, cache hits included).
        let status = self
            .status
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let known = [
            ("pageCursor", self.page_cursor.map(|c| c.to_string())),
            ("pageSize", Some(self.page_size.to_string())),
            ("status", (!self.status.is_empty()).then_some(status)),
            ("taskType", self.task_type.map(|t| t.to_string())),
        ];
        let mut pairs: Vec<(&str, &str)> = known
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .chain(self.other.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        pairs.sort_unstable();
        let mut out = String::with_capacity(64);
        for (i, (k, v)) in pairs.iter().enumerate() {
            let sep = if i == 0 { "" } else { "&" };
            let _ = write!(
                out,
                "{sep}{}={}",
                utf8_percent_encode(k, COMPONENT),
                utf8_percent_encode(v, COMPONENT)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
