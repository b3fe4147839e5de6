//! JSON normalization as pure functions over bytes.
//!
//! KooDrive's bodies drift from its documented schema (`taskListDtos` for `taskList`, numbers where
//! strings are documented). The gateway rewrites them so callers see one stable shape; anything it
//! cannot read as a JSON object passes through untouched.
//!
//! ```
//! use koodrive_gateway::normalize::{normalize_body, Outcome, Reason, Rule};
//!
//! // A task-list page as KooDrive sends it: the list under `taskListDtos`, ids and code as numbers.
//! let page = br#"{"taskListDtos":[{"taskId":1486254586942472064}],"code":0,"msg":"Success."}"#;
//! let Outcome::Normalized { body, mismatches } = normalize_body(&Rule::task_list(), page) else {
//!     panic!("a JSON object is normalized");
//! };
//! assert_eq!(mismatches, 0);
//! assert_eq!(
//!     &body[..],
//!     br#"{"taskList":[{"taskId":"1486254586942472064"}],"code":"0","msg":"Success."}"#
//! );
//!
//! // What is not a JSON object passes through, with the reason as a bounded label.
//! let Outcome::PassThrough(reason) = normalize_body(&Rule::task_list(), b"<html>") else {
//!     panic!("not JSON");
//! };
//! assert_eq!(reason, Reason::InvalidJson);
//! assert_eq!(reason.as_str(), "invalid_json");
//! ```

mod code;
mod config;
mod decode;
mod rewrite;
mod rules;
mod scan;
mod shape;

use bytes::Bytes;
use serde_json::{Map, Value};

pub(crate) use code::code_of;
pub use code::Code;
pub use config::{NormalizeConfig, RawNormalizeConfig, RawRule, RawShape, RuleError};
pub use decode::{decodable, decode, DecodeError};
pub use rules::{Rule, RuleTable};
pub(crate) use scan::{top_level_member, Member};
pub use shape::FieldType;

/// What [`normalize_body`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rewritten body, and how many fields did not fit their documented type (left as they were).
    Normalized { body: Bytes, mismatches: usize },
    /// The body is not something to normalize: send the original bytes.
    PassThrough(Reason),
}

/// Why a body passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not UTF-8, so not JSON.
    NotUtf8,
    /// Not valid JSON, or an object nested more than 127 deep (serde_json's own limit).
    InvalidJson,
    /// Valid JSON, but not an object at the top level.
    NotAnObject,
}

impl Reason {
    /// A bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
        }
    }
}

/// Rewrites a 2xx body to the documented shape of `rule`.
pub fn normalize_body(rule: &Rule, body: &[u8]) -> Outcome {
    normalize_page(rule, body).0
}

/// [`normalize_body`], and the rewritten body's top-level `code` as read on the way (so that the
/// cache need not read the page again to learn it).
pub fn normalize_page(rule: &Rule, body: &[u8]) -> (Outcome, Code) {
    let Ok(text) = std::str::from_utf8(body) else {
        return (Outcome::PassThrough(Reason::NotUtf8), Code::Unknown);
    };
    // JSON's own whitespace only: `trim_start`'s Unicode whitespace (a form feed, U+00A0) would
    // let a body serde_json refuses be normalized and stored.
    let start = body
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(body.len());
    if body.get(start) != Some(&b'{') {
        // Rare: tell a JSON array or string from something that is not JSON at all.
        let json = serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok();
        let reason = match json {
            true => Reason::NotAnObject,
            false => Reason::InvalidJson,
        };
        return (Outcome::PassThrough(reason), Code::Unknown);
    }
    // One pass checks the grammar (as strictly as serde_json) and rewrites.
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    match rewrite::document(body, start, &rule.shape, &mut out) {
        Ok((mismatches, code)) => {
            let body = Bytes::from(out);
            (Outcome::Normalized { body, mismatches }, code)
        }
        Err(scan::Stop::Invalid | scan::Stop::TooDeep) => {
            (Outcome::PassThrough(Reason::InvalidJson), Code::Unknown)
        }
    }
}

/// Rewrites a non-2xx body to KooDrive's `{"code": ..., "msg": ...}`, from either its own shape
/// or the API gateway's (`error_code`, `error_msg`, `request_id`). A numeric `code` becomes a
/// string where the route's `code` is one (`code_as_string`: the task APIs); elsewhere KooDrive
/// declares it an integer, and it stays one. `None` means there is nothing to change: send the
/// original bytes.
pub fn normalize_error_body(body: &[u8], code_as_string: bool) -> Option<Bytes> {
    let mut map = parse_object(body).ok()?;
    if map.contains_key("error_code") {
        rename(&mut map, "error_code", "code");
        rename(&mut map, "error_msg", "msg");
        rename(&mut map, "request_id", "requestId");
    } else if !(code_as_string && matches!(map.get("code"), Some(Value::Number(_)))) {
        return None;
    }
    if let (true, Some(Value::Number(code))) = (code_as_string, map.get("code")) {
        let code = Value::String(code.as_str().to_owned());
        map.insert("code".to_owned(), code);
    }
    serde_json::to_vec(&map).ok().map(Bytes::from)
}

/// Whether a message is labelled JSON by its `Content-Type` (see [`is_json_content_type`]).
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type)
}

/// Whether a `Content-Type` value is JSON: `application/json` or any `+json` type, parameters ignored.
pub fn is_json_content_type(value: &str) -> bool {
    // Found byte by byte: the values are a few dozen bytes, too short for a searcher to pay.
    let find = |text: &str, byte: u8| text.bytes().position(|b| b == byte);
    let essence = find(value, b';').map_or(value, |at| &value[..at]).trim();
    let Some(slash) = find(essence, b'/') else {
        return false;
    };
    let (kind, subtype) = (
        essence[..slash].trim_end(),
        essence[slash + 1..].trim_start(),
    );
    let plus_json = subtype.len() > 5 && {
        let (name, suffix) = subtype.split_at(subtype.len() - 5);
        suffix.eq_ignore_ascii_case("+json") && !name.contains(['/', ' '])
    };
    let app_json = kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json");
    !kind.is_empty() && (app_json || plus_json)
}

/// Parses a small JSON object; serde_json's recursion limit keeps deep nesting an error, not a stack overflow.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Reason> {
    let text = std::str::from_utf8(body).map_err(|_| Reason::NotUtf8)?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Reason::NotAnObject),
        Err(_) => Err(Reason::InvalidJson),
    }
}

fn mismatch(mismatches: &mut usize, field: &str, expected: &str) {
    *mismatches += 1;
    tracing::debug!(
        field,
        expected,
        "response field does not match its documented type"
    );
}

/// Renames `from` to `to` at the same position; if `to` is already there it wins and `from` goes.
fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if map.contains_key(to) {
        map.shift_remove(from);
        return;
    }
    let Some(index) = map.keys().position(|key| key == from) else {
        return;
    };
    if let Some(value) = map.shift_remove(from) {
        map.shift_insert(index, to.to_owned(), value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod properties;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
