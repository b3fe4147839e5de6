use super::*;

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
        let Outcome::Normalized { body: out, .. } = normalize_body(&Rule::task_list(), body) else {
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
    let body =
        br#"{"taskDto":{"taskId":1486254586942472064,"status":"1","steps":[{"n":"7"}]},"code":0}"#;
    let Outcome::Normalized { body, mismatches } = normalize_body(rule, body) else {
        panic!("not normalized");
    };
    let expected =
        r#"{"task":{"taskId":"1486254586942472064","status":1,"steps":[{"n":7}]},"code":"0"}"#;
    assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    assert_eq!(mismatches, 0);
}

/// The top-level `code` of a body as serde_json reads it (the cache policy's reference).
pub(super) fn serde_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Coded {
        code: Option<Value>,
    }
    match serde_json::from_slice::<Coded>(body).ok()?.code? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[test]
fn the_output_code_is_read_on_the_way() {
    let known = |code: &str| Code::Known(Some(code.into()));
    let task_list = Rule::task_list();
    let config: RawNormalizeConfig = toml::from_str(
        r#"
        [[rules]]
        path = "/x"
        rename = { error_code = "code" }
        "#,
    )
    .unwrap();
    let config = config.validate().unwrap();
    let renaming = config.rules.find(&http::Method::GET, "/x").unwrap();
    // (rule, body, code read)
    let cases: &[(&Rule, &str, Code)] = &[
        (&task_list, r#"{"taskList":[],"code":0}"#, known("0")),
        (&task_list, r#"{"code":"0","msg":"Success."}"#, known("0")),
        (&task_list, r#"{"code":-17}"#, known("-17")),
        (&task_list, r#"{"code":1.50}"#, known("1.50")),
        (&task_list, r#"{"code":"APIG.0308"}"#, known("APIG.0308")),
        (&task_list, r#"{"taskList":[]}"#, Code::Known(None)),
        (&task_list, r#"{"code":null}"#, Code::Known(None)),
        (&task_list, r#"{"code":true}"#, Code::Known(None)),
        (&task_list, r#"{"x":{"code":5}}"#, Code::Known(None)),
        (&task_list, r#"{"code":"\u0030"}"#, Code::Unknown),
        (&task_list, r#"{"c\u006fde":"0"}"#, Code::Unknown),
        (&task_list, r#"{"code":0,"code":1}"#, Code::Unknown),
        (renaming, r#"{"error_code":"7"}"#, Code::Unknown),
        (renaming, r#"{"code":"7"}"#, Code::Unknown),
    ];
    for (rule, body, expected) in cases {
        let (outcome, code) = normalize_page(rule, body.as_bytes());
        assert_eq!(&code, expected, "{body}");
        let Outcome::Normalized { body: out, .. } = outcome else {
            panic!("not normalized: {body}");
        };
        if let Code::Known(code) = code {
            assert_eq!(code.map(String::from), serde_code(&out), "{body}");
        }
    }
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
