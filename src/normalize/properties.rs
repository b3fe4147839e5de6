//! Property tests: the rewriter against serde_json and against a model that applies the rules to
//! a `serde_json::Value` tree.

use super::tests::serde_code;
use super::*;
use proptest::prelude::*;

/// The rules applied to a `Value` tree: the obvious (and slower) model the rewriter must match.
fn model(shape: &shape::Shape, map: &mut Map<String, Value>) {
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
        let (outcome, code) = normalize_page(&Rule::task_list(), &input);
        match outcome {
            Outcome::Normalized { body, .. } => {
                // The code read on the way is the output's, as serde_json reads it.
                if let Code::Known(code) = code {
                    prop_assert_eq!(code.map(String::from), serde_code(&body));
                }
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
