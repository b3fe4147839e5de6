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

mod decode;
mod rewrite;
mod rules;

use bytes::Bytes;
use serde_json::{Map, Value};

pub use decode::{decodable, decode, DecodeError};
pub use rules::{
    FieldType, NormalizeConfig, RawNormalizeConfig, RawRule, RawShape, Rule, RuleError, RuleTable,
};

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
    let Ok(text) = std::str::from_utf8(body) else {
        return Outcome::PassThrough(Reason::NotUtf8);
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
        return Outcome::PassThrough(match json {
            true => Reason::NotAnObject,
            false => Reason::InvalidJson,
        });
    }
    // One pass checks the grammar (as strictly as serde_json) and rewrites.
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    match rewrite::document(body, start, &rule.shape, &mut out) {
        Ok(mismatches) => Outcome::Normalized {
            body: Bytes::from(out),
            mismatches,
        },
        Err(rewrite::Stop::Invalid | rewrite::Stop::TooDeep) => {
            Outcome::PassThrough(Reason::InvalidJson)
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
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let (kind, subtype) = (kind.trim_end(), subtype.trim_start());
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Normalizes with the built-in task-list rule; returns the output text and the mismatch count.
    fn task_list(input: &[u8]) -> (String, usize) {
        match normalize_body(&Rule::task_list(), input) {
            Outcome::Normalized { body, mismatches } => {
                (String::from_utf8(body.to_vec()).unwrap(), mismatches)
            }
            Outcome::PassThrough(reason) => panic!("passed through: {reason:?}"),
        }
    }

    #[test]
    fn upstream_example_becomes_documented_schema() {
        let upstream = r#"{
          "taskListDtos" : [ {
            "taskId" : "1486254586942472064", "taskName" : "ceshi1111", "taskType" : 0, "status" : 2,
            "createTime" : "2024-08-12T07:22:33.000Z"
          }, {
            "taskId" : "1486368980720435072", "taskName" : "ceshi4", "taskType" : 0, "status" : 2,
            "createTime" : "2024-08-12T11:09:50.000Z"
          } ],
          "nextCursor" : 1723549107000, "code" : 0, "msg" : "Success."
        }"#;
        let expected = concat!(
            r#"{"taskList":[{"taskId":"1486254586942472064","taskName":"ceshi1111","taskType":0,"#,
            r#""status":2,"createTime":"2024-08-12T07:22:33.000Z"},{"taskId":"1486368980720435072","#,
            r#""taskName":"ceshi4","taskType":0,"status":2,"createTime":"2024-08-12T11:09:50.000Z"}],"#,
            r#""nextCursor":"1723549107000","code":"0","msg":"Success."}"#
        );
        let (text, mismatches) = task_list(upstream.as_bytes());
        assert_eq!(text, expected, "exact digits and key order");
        assert_eq!(mismatches, 0);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(expected).unwrap());
    }

    #[test]
    fn task_list_cases() {
        // (what, input, expected output, mismatches)
        let cases: &[(&str, &str, &str, usize)] = &[
            (
                "documented taskList wins over taskListDtos",
                r#"{"taskListDtos":[{"taskId":1}],"taskList":[{"taskId":2}],"code":0}"#,
                r#"{"taskList":[{"taskId":"2"}],"code":"0"}"#,
                0,
            ),
            (
                "rename keeps the key's position",
                r#"{"a":1,"taskListDtos":[],"b":2}"#,
                r#"{"a":1,"taskList":[],"b":2}"#,
                0,
            ),
            (
                "null cursor is the last page: removed",
                r#"{"taskList":[],"nextCursor":null,"code":"0"}"#,
                r#"{"taskList":[],"code":"0"}"#,
                0,
            ),
            (
                "absent cursor stays absent",
                r#"{"taskList":[],"code":"0","msg":"Success."}"#,
                r#"{"taskList":[],"code":"0","msg":"Success."}"#,
                0,
            ),
            (
                "numbers beyond u64 keep every digit",
                r#"{"taskList":[{"taskId":1234567890123456789012345}],"nextCursor":9876543210987654321098765}"#,
                r#"{"taskList":[{"taskId":"1234567890123456789012345"}],"nextCursor":"9876543210987654321098765"}"#,
                0,
            ),
            (
                "digit strings become integers, exact and any length",
                r#"{"taskList":[{"taskType":"0","status":"-2"},{"taskType":"0003","status":"1234567890123456789012345"}]}"#,
                r#"{"taskList":[{"taskType":0,"status":-2},{"taskType":3,"status":1234567890123456789012345}]}"#,
                0,
            ),
            (
                "mismatches are left as they are and counted",
                r#"{"taskList":[{"taskId":{"a":1},"taskName":true,"status":"abc","taskType":1.5,"locale":[]},7],"msg":false}"#,
                r#"{"taskList":[{"taskId":{"a":1},"taskName":true,"status":"abc","taskType":1.5,"locale":[]},7],"msg":false}"#,
                7,
            ),
            (
                "taskList that is not an array is a mismatch",
                r#"{"taskListDtos":"nope","code":0}"#,
                r#"{"taskList":"nope","code":"0"}"#,
                1,
            ),
            (
                "null fields mean no value, not a mismatch",
                r#"{"taskList":[{"endTime":null,"status":null}],"msg":null}"#,
                r#"{"taskList":[{"endTime":null,"status":null}],"msg":null}"#,
                0,
            ),
            (
                "unknown fields are kept, with values and order, at every level",
                r#"{"z":{"y":[1,{"b":2,"a":3}],"x":1.50},"taskListDtos":[{"zz":{"q":1,"p":2},"taskId":5,"aa":null}],"a":"1"}"#,
                r#"{"z":{"y":[1,{"b":2,"a":3}],"x":1.50},"taskList":[{"zz":{"q":1,"p":2},"taskId":"5","aa":null}],"a":"1"}"#,
                0,
            ),
            ("an empty object is fine", "{}", "{}", 0),
        ];
        for (what, input, expected, mismatches) in cases {
            let (text, count) = task_list(input.as_bytes());
            assert_eq!(&text, expected, "{what}");
            assert_eq!(count, *mismatches, "{what}: mismatches");
        }
    }

    #[test]
    fn unreadable_bodies_pass_through() {
        let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        let deep_unknown = format!(
            r#"{{"code":0,"x":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let deep_inside = format!(
            r#"{{"taskList":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let cases: &[(&str, &[u8], Reason)] = &[
            (
                "non-UTF-8 bytes",
                b"{\"taskId\":\"\xff\xfe\"}",
                Reason::NotUtf8,
            ),
            ("top-level array", b"[{\"taskId\":1}]", Reason::NotAnObject),
            ("top-level string", b"\"taskList\"", Reason::NotAnObject),
            ("top-level null", b"null", Reason::NotAnObject),
            ("truncated", b"{\"taskList\":[", Reason::InvalidJson),
            ("empty", b"", Reason::InvalidJson),
            ("trailing garbage", b"{} x", Reason::InvalidJson),
            // Whitespace, but not JSON's: serde_json refuses these.
            ("a leading form feed", b"\x0c{}", Reason::InvalidJson),
            (
                "a leading no-break space",
                b"\xc2\xa0{}",
                Reason::InvalidJson,
            ),
            // Refused before any nesting is looked at.
            (
                "10,000 deep array",
                deep_array.as_bytes(),
                Reason::NotAnObject,
            ),
            (
                "10,000 deep unknown field",
                deep_unknown.as_bytes(),
                Reason::InvalidJson,
            ),
            (
                "10,000 deep object",
                deep_object.as_bytes(),
                Reason::InvalidJson,
            ),
            (
                "10,000 deep inside",
                deep_inside.as_bytes(),
                Reason::InvalidJson,
            ),
        ];
        for (what, input, reason) in cases {
            let outcome = normalize_body(&Rule::task_list(), input);
            assert_eq!(outcome, Outcome::PassThrough(*reason), "{what}");
            assert_eq!(
                normalize_error_body(input, true),
                None,
                "{what}: error body"
            );
        }
    }

    #[test]
    fn a_repeated_source_key_is_renamed_once() {
        let cases: [(&[u8], &str); 3] = [
            (
                br#"{"taskListDtos":[{"taskId":1}],"taskListDtos":[{"taskId":2}],"taskList":[{"taskId":3}],"code":0}"#,
                r#"{"taskList":[{"taskId":"3"}],"code":"0"}"#,
            ),
            (
                br#"{"taskListDtos":[{"taskId":1}],"code":0,"taskListDtos":[{"taskId":2}]}"#,
                r#"{"code":"0","taskList":[{"taskId":"2"}]}"#,
            ),
            (
                br#"{"taskList":[{"taskId":3}],"taskListDtos":[],"taskListDtos":[{"taskId":2}]}"#,
                r#"{"taskList":[{"taskId":"3"}]}"#,
            ),
        ];
        for (body, expected) in cases {
            let Outcome::Normalized { body: out, .. } = normalize_body(&Rule::task_list(), body)
            else {
                panic!("not normalized: {}", String::from_utf8_lossy(body));
            };
            assert_eq!(std::str::from_utf8(&out).unwrap_or_default(), expected);
        }
    }

    #[test]
    fn nesting_up_to_the_limit_is_kept() {
        let nested = format!(r#"{{"x":{}{}}}"#, "[".repeat(126), "]".repeat(126));
        assert_eq!(task_list(nested.as_bytes()), (nested.clone(), 0));
        // One more container is one serde_json refuses: so is it here.
        let deeper = format!(r#"{{"x":{}{}}}"#, "[".repeat(127), "]".repeat(127));
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
        assert_eq!(
            normalize_body(&Rule::task_list(), deeper.as_bytes()),
            Outcome::PassThrough(Reason::InvalidJson)
        );
    }

    #[test]
    fn error_bodies() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "KooDrive's numeric code",
                r#"{"code": 13000201, "msg": "inner server invoke failure"}"#,
                Some(r#"{"code":"13000201","msg":"inner server invoke failure"}"#),
            ),
            (
                "API gateway shape, other fields kept in order",
                r#"{"error_code":"APIG.0308","x":1,"error_msg":"throttled","request_id":"r-1","y":[2]}"#,
                Some(r#"{"code":"APIG.0308","x":1,"msg":"throttled","requestId":"r-1","y":[2]}"#),
            ),
            (
                "API gateway shape with a numeric code",
                r#"{"error_code":401,"error_msg":"no"}"#,
                Some(r#"{"code":"401","msg":"no"}"#),
            ),
            (
                "documented code wins over error_code",
                r#"{"error_code":"APIG.1","code":5,"msg":"m"}"#,
                Some(r#"{"code":"5","msg":"m"}"#),
            ),
            (
                "already a string code",
                r#"{"code":"13000201","msg":"m"}"#,
                None,
            ),
            ("neither shape", r#"{"message":"oops"}"#, None),
            ("not an object", r#"[{"code":1}]"#, None),
            ("not JSON", "<html>502</html>", None),
        ];
        for (what, input, expected) in cases {
            let out = normalize_error_body(input.as_bytes(), true);
            let out = out.map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(out.as_deref(), *expected, "{what}");
        }
    }

    #[test]
    fn json_content_types() {
        let cases = [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON ; Charset=UTF-8", true),
            ("  application/json  ", true),
            ("application/problem+json", true),
            ("application/vnd.koodrive.task+JSON; v=1", true),
            ("text/html", false),
            ("application/jsonp", false),
            ("application/json-seq", false),
            ("application/+json", false),
            ("json", false),
            ("/json", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_json_content_type(value), expected, "{value:?}");
        }
    }

    #[test]
    fn user_rule_from_toml_normalizes_another_endpoint() {
        #[derive(serde::Deserialize)]
        struct File {
            normalize: RawNormalizeConfig,
        }
        let file: File = toml::from_str(
            r#"
            [[normalize.rules]]
            path = "/koodrive/ose/v1/task/{id}"
            rename = { taskDto = "task" }
            types = { code = "string" }
            [normalize.rules.objects.task]
            types = { taskId = "string", status = "integer" }
            [normalize.rules.objects.task.arrays.steps]
            types = { n = "integer" }
            "#,
        )
        .unwrap();
        let config = file.normalize.validate().unwrap();
        let rule = config
            .rules
            .find(&http::Method::GET, "/koodrive/ose/v1/task/42")
            .unwrap();
        let body = br#"{"taskDto":{"taskId":1486254586942472064,"status":"1","steps":[{"n":"7"}]},"code":0}"#;
        let Outcome::Normalized { body, mismatches } = normalize_body(rule, body) else {
            panic!("not normalized");
        };
        let expected =
            r#"{"task":{"taskId":"1486254586942472064","status":1,"steps":[{"n":7}]},"code":"0"}"#;
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        assert_eq!(mismatches, 0);
    }

    #[test]
    fn documented_keys_win_over_renamed_ones_in_any_order() {
        let config: RawNormalizeConfig = toml::from_str(
            r#"
            [[rules]]
            path = "/x"
            rename = { a = "A", b = "B" }
            omit_null = ["B"]
            "#,
        )
        .unwrap();
        let config = config.validate().unwrap();
        let rule = config.rules.find(&http::Method::GET, "/x").unwrap();
        let cases = [
            (r#"{"a":1,"b":2,"A":3,"B":4}"#, r#"{"A":3,"B":4}"#),
            (
                r#"{"A":3,"a":1,"b":2,"B":4,"z":0}"#,
                r#"{"A":3,"B":4,"z":0}"#,
            ),
            (r#"{"b":null,"a":1}"#, r#"{"A":1}"#),
            (
                r#"{ "a" : [ 1 , 2 ] , "b" : { } }"#,
                r#"{"A":[ 1 , 2 ],"B":{ }}"#,
            ),
            (r#"{"a\u0062":1,"\u0061":2}"#, r#"{"a\u0062":1,"A":2}"#),
        ];
        for (input, expected) in cases {
            let Outcome::Normalized { body, .. } = normalize_body(rule, input.as_bytes()) else {
                panic!("{input}");
            };
            assert_eq!(std::str::from_utf8(&body).unwrap(), expected, "{input}");
        }
    }

    /// The rules applied to a `Value` tree: the obvious (and slower) model the rewriter must match.
    fn model(shape: &rules::Shape, map: &mut Map<String, Value>) {
        for (from, to) in &shape.rename {
            if map.contains_key(to) {
                map.shift_remove(from);
            } else if let Some(i) = map.keys().position(|k| k == from) {
                let value = map.shift_remove(from).unwrap();
                map.shift_insert(i, to.clone(), value);
            }
        }
        for field in &shape.omit_null {
            if map.get(field).is_some_and(Value::is_null) {
                map.shift_remove(field);
            }
        }
        for (field, ty) in &shape.types {
            let Some(value) = map.get_mut(field) else {
                continue;
            };
            match (ty, &*value) {
                (FieldType::String, Value::Number(n)) => *value = Value::String(n.as_str().into()),
                (FieldType::Integer, Value::String(s)) => {
                    let (sign, digits) = s.strip_prefix('-').map_or(("", &s[..]), |d| ("-", d));
                    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                        let digits = digits.trim_start_matches('0');
                        let digits = if digits.is_empty() { "0" } else { digits };
                        *value = Value::Number(format!("{sign}{digits}").parse().unwrap());
                    }
                }
                _ => {}
            }
        }
        for (field, element) in &shape.arrays {
            if let Some(Value::Array(items)) = map.get_mut(field) {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    model(element, item);
                }
            }
        }
    }

    /// JSON values that lean towards the keys the rules care about.
    fn json_value() -> impl Strategy<Value = Value> {
        let number = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "-?[1-9][0-9]{0,30}".prop_map(|s| Value::Number(s.parse().unwrap())),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            "-?[0-9]{0,25}|\\PC{0,8}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "taskListDtos",
                "taskList",
                "code",
                "msg",
                "nextCursor",
                "taskId",
                "taskType",
                "status",
                "error_code",
                "error_msg",
                "request_id",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,6}",
        ];
        leaf.prop_recursive(5, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = normalize_body(&Rule::task_list(), &bytes);
            let _ = normalize_error_body(&bytes, true);
        }

        /// The one-pass rewriter checks the grammar itself: it must accept exactly what serde_json
        /// accepts, on valid objects and on objects with one byte cut, changed or added.
        #[test]
        fn accepts_exactly_what_serde_json_accepts(
            value in json_value(),
            at in any::<prop::sample::Index>(),
            edit in 0..4u8,
            byte in prop::sample::select(b" \t\n\r{}[],:\"\\/0123456789-+.eEtrufalsnb\x00\x1f".to_vec()),
        ) {
            let mut input = serde_json::to_vec(&serde_json::json!({ "taskList": [value] })).unwrap();
            let at = at.index(input.len());
            match edit {
                0 => input.truncate(at),
                1 => input[at] = byte,
                2 => input.insert(at, byte),
                _ => {}
            }
            let Ok(text) = std::str::from_utf8(&input) else {
                let outcome = normalize_body(&Rule::task_list(), &input);
                prop_assert_eq!(outcome, Outcome::PassThrough(Reason::NotUtf8));
                return Ok(());
            };
            let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            let object = text.trim_start().starts_with('{');
            match normalize_body(&Rule::task_list(), &input) {
                Outcome::Normalized { body, .. } => {
                    prop_assert!(serde_ok && object, "accepted {text:?}");
                    serde_json::from_slice::<Value>(&body).unwrap();
                }
                Outcome::PassThrough(reason) => {
                    prop_assert!(!(serde_ok && object), "refused {text:?}: {reason:?}");
                }
            }
        }

        #[test]
        fn any_json_object_normalizes_to_json(value in json_value()) {
            let input = serde_json::to_vec(&value).unwrap();
            match normalize_body(&Rule::task_list(), &input) {
                Outcome::Normalized { body, .. } => {
                    prop_assert!(value.is_object());
                    let output: Value = serde_json::from_slice(&body).unwrap();
                    let mut expected = value.as_object().unwrap().clone();
                    model(&Rule::task_list().shape, &mut expected);
                    // Compared as text: same keys, same order, same number digits.
                    prop_assert_eq!(output.to_string(), Value::Object(expected).to_string());
                    // Normalizing is idempotent: a second pass changes nothing.
                    let again = normalize_body(&Rule::task_list(), &body);
                    let Outcome::Normalized { body: twice, .. } = again else { panic!("{again:?}") };
                    prop_assert_eq!(body, twice);
                }
                Outcome::PassThrough(reason) => {
                    prop_assert!(!value.is_object());
                    prop_assert_eq!(reason, Reason::NotAnObject);
                }
            }
            if let Some(body) = normalize_error_body(&input, true) {
                serde_json::from_slice::<Value>(&body).unwrap();
            }
        }
    }
}
