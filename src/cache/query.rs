//! The task-list query: validated before any cache or upstream work, then written in one
//! canonical form so that equal queries share one cache entry.
//!
//! `status=2&status=1`, `status=1,2` and `status=1&status=2&pageSize=100` are the same query:
//! parameters sorted by name, status a sorted set, `pageSize` defaulted to 100, an empty `pageCursor`
//! the same as none.

use std::borrow::Cow;

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
    /// The statuses asked for, as a set: bit `n` is status `n` (0 to 3), so repeats and order
    /// are gone by construction.
    pub status: u8,
    pub page_size: u32,
    pub page_cursor: Option<i64>,
    /// Parameters KooDrive may know and we do not: kept as part of the key, sorted by name; a
    /// repeated name keeps its values in the order written, since KooDrive may read only the
    /// first (`a=1&a=2` and `a=2&a=1` are different queries).
    pub other: Vec<(String, String)>,
}

/// The canonical text of every status set, indexed by its bits: the statuses in order, joined by
/// an encoded comma.
const STATUS_TEXT: [&str; 16] = [
    "",
    "0",
    "1",
    "0%2C1",
    "2",
    "0%2C2",
    "1%2C2",
    "0%2C1%2C2",
    "3",
    "0%2C3",
    "1%2C3",
    "0%2C1%2C3",
    "2%2C3",
    "0%2C2%2C3",
    "1%2C2%2C3",
    "0%2C1%2C2%2C3",
];

/// The error names the parameter as a client wrote it, decoded: cut short and escaped (a name
/// decoded from `%0A` must not start a line of its own in a plain-text log).
fn bad(param: &str, value: &str, allowed: &'static str) -> GatewayError {
    GatewayError::BadQuery {
        param: param
            .chars()
            .take(64)
            .flat_map(char::escape_debug)
            .collect(),
        value: value.chars().take(64).collect(),
        allowed,
    }
}

/// Decodes one query component of parameter `param` strictly: `+` is a space, `%XY` must be two
/// hex digits, and the result must be UTF-8. A component with neither is its own decoding (the
/// common case, which allocates nothing).
pub(crate) fn decode<'a>(raw: &'a str, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    let bytes = raw.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'%' | b'+')) {
        return Ok(Cow::Borrowed(raw));
    }
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad(param, raw, "well-formed percent-encoding"));
        }
    }
    let plus_as_space = raw.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|s| Cow::Owned(s.into_owned()))
        .map_err(|_| bad(param, raw, "UTF-8 text"))
}

fn once(seen: &mut bool, param: &str, value: &str) -> Result<(), GatewayError> {
    if std::mem::replace(seen, true) {
        return Err(bad(param, value, "at most one value"));
    }
    Ok(())
}

/// Appends `name=value` to a canonical query, `&`-separated, each given as the pieces of its
/// text.
fn push_pair<'a>(
    out: &mut String,
    name: impl IntoIterator<Item = &'a str>,
    value: impl IntoIterator<Item = &'a str>,
) {
    if !out.is_empty() {
        out.push('&');
    }
    out.extend(name);
    out.push('=');
    out.extend(value);
}

/// `text` before and after the first `byte` (ASCII). A plain byte scan: the queries split here
/// are a few dozen bytes, too short for `str::split_once`'s searcher to pay off.
pub(crate) fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

impl TaskListQuery {
    pub fn parse(query: Option<&str>) -> Result<TaskListQuery, GatewayError> {
        let mut parsed = TaskListQuery {
            task_type: None,
            status: 0,
            page_size: MAX_PAGE_SIZE,
            page_cursor: None,
            other: Vec::new(),
        };
        let (mut seen_type, mut seen_size, mut seen_cursor) = (false, false, false);
        let mut rest = query.unwrap_or_default();
        while !rest.is_empty() {
            let pair;
            (pair, rest) = split_at_byte(rest, b'&').unwrap_or((rest, ""));
            if pair.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = split_at_byte(pair, b'=').unwrap_or((pair, ""));
            // An error names the parameter: as written when the name itself is malformed.
            let name = decode(raw_name, raw_name)?;
            let value = decode(raw_value, &name)?;
            match &*name {
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
                        parsed.status |= 1 << s;
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
                _ => parsed.other.push((name.into_owned(), value.into_owned())),
            }
        }
        // Stable: by name only, so a repeated name's values keep their order.
        parsed.other.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(parsed)
    }

    /// The canonical text of the query: the cache key's query part. Every pair sorted by name
    /// (a repeated name's values in the order written), percent-encoded; written into one string with no formatting machinery (this
    /// runs on every task-list request, cache hits included).
    pub fn canonical(&self) -> String {
        let (mut cursor, mut size, mut task_type) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        // The known parameters, in name order; their values need no encoding.
        let known = [
            ("pageCursor", self.page_cursor.map(|c| cursor.format(c))),
            ("pageSize", Some(size.format(self.page_size))),
            (
                "status",
                STATUS_TEXT
                    .get(usize::from(self.status))
                    .copied()
                    .filter(|s| !s.is_empty()),
            ),
            ("taskType", self.task_type.map(|t| task_type.format(t))),
        ];
        let mut out = String::with_capacity(64);
        // The other parameters are sorted already and never share a known name: merge them in.
        let mut others = self.other.iter().peekable();
        let mut push_others_before = |out: &mut String, bound: Option<&str>| {
            let before = |(k, _): &&(String, String)| bound.map_or(true, |b| k.as_str() < b);
            while let Some((k, v)) = others.next_if(before) {
                let (k, v) = (
                    utf8_percent_encode(k, COMPONENT),
                    utf8_percent_encode(v, COMPONENT),
                );
                push_pair(out, k, v);
            }
        };
        for (name, value) in known {
            if let Some(value) = value {
                push_others_before(&mut out, Some(name));
                push_pair(&mut out, [name], [value]);
            }
        }
        push_others_before(&mut out, None);
        out
    }
}

#[cfg(test)]
mod tests;
