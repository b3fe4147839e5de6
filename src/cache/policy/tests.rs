use super::*;
use http::HeaderValue;

fn config() -> CacheConfig {
    CacheConfig {
        max_bytes: 1 << 20,
        max_entry_bytes: 1000,
        ttl: Duration::from_secs(3),
        stale_while_revalidate: Duration::from_secs(10),
        stale_if_error: Duration::from_secs(60),
        routes: Default::default(),
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_static(v));
    }
    map
}

fn page(status: u16, body: &'static str, pairs: &[(&'static str, &'static str)]) -> Page {
    Page {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        headers: headers(pairs),
        body: body.into(),
        code: crate::normalize::Code::Unknown,
    }
}

#[test]
fn client_directives() {
    let cases = [
        (vec![], Directive::Normal),
        (vec![("cache-control", "no-cache")], Directive::Refresh),
        (vec![("cache-control", "max-age=0")], Directive::Refresh),
        (
            vec![("cache-control", "Max-Age = 0, foo")],
            Directive::Refresh,
        ),
        (vec![("pragma", "no-cache")], Directive::Refresh),
        (vec![("cache-control", "no-store")], Directive::NoStore),
        (vec![("cache-control", "No-Store")], Directive::NoStore),
        (
            vec![("cache-control", "no-store ,max-age=5")],
            Directive::NoStore,
        ),
        (
            vec![("cache-control", "no-cache, no-store")],
            Directive::NoStore,
        ),
        (vec![("cache-control", "max-age=60")], Directive::Normal),
        // Delta-seconds, and the quoted form: zero however it is written.
        (vec![("cache-control", "max-age=00")], Directive::Refresh),
        (vec![("cache-control", "max-age=\"0\"")], Directive::Refresh),
        (vec![("cache-control", "max-age=\"10\"")], Directive::Normal),
        (vec![("cache-control", "max-age=")], Directive::Normal),
        (vec![("cache-control", "max-age=0x0")], Directive::Normal),
        (
            vec![("cache-control", "max-age=99999999999999999999999")],
            Directive::Normal,
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(client_directive(&headers(&pairs)), expected, "{pairs:?}");
    }
}

#[test]
fn only_successful_small_private_free_pages_are_stored() {
    // A page labelled JSON, with `extra` headers besides.
    let json = |status, body, extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![("content-type", "application/json;charset=UTF-8")];
        pairs.extend_from_slice(extra);
        page(status, body, &pairs)
    };
    let ok = r#"{"code":"0","msg":"Success.","taskList":[]}"#;
    assert!(storable(&json(200, ok, &[]), 1000));
    assert!(storable(&json(200, r#"{"code":0}"#, &[]), 1000));
    assert!(!storable(&page(200, ok, &[]), 1000), "not labelled JSON");
    assert!(!storable(
        &page(200, ok, &[("content-type", "text/plain")]),
        1000
    ));
    assert!(!storable(&json(200, ok, &[]), 10), "too large");
    assert!(!storable(&json(201, ok, &[]), 1000));
    assert!(!storable(&json(200, r#"{"code":"13000201"}"#, &[]), 1000));
    assert!(!storable(&json(200, "not json", &[]), 1000));
    assert!(!storable(&json(200, ok, &[("set-cookie", "a=b")]), 1000));
    assert!(!storable(
        &json(200, ok, &[("cache-control", "private, no-store")]),
        1000
    ));
    // Vary: only on what the key holds.
    assert!(storable(
        &json(200, ok, &[("vary", "Accept-Encoding, language")]),
        1000
    ));
    assert!(!storable(
        &json(200, ok, &[("vary", "Accept-Language")]),
        1000
    ));
    assert!(!storable(&json(200, ok, &[("vary", "*")]), 1000));
}

#[test]
fn code_is_read_as_serde_json_reads_it() {
    let nested = |depth: usize| {
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        format!(r#"{{"code":0,"x":{open}{close}}}"#).into_bytes()
    };
    // The scan's nesting limit is a tree's; past it serde_json reads the body.
    let (shallow, deep) = (nested(126), nested(127));
    // (body, what the scan says, serde_json agreeing)
    let pinned: &[(&[u8], Option<&str>)] = &[
        (br#"{"code":0}"#, Some("0")),
        (br#"{"code":"0","msg":"Success."}"#, Some("0")),
        (b" {\n \"msg\" : \"x\" ,\t\"code\" : -12 }\r\n", Some("-12")),
        (br#"{"code":"APIG.0308"}"#, Some("APIG.0308")),
        (
            br#"{"code":12345678901234567890123}"#,
            Some("12345678901234567890123"),
        ),
        (br#"{"code":"\u0030"}"#, Some("0")),
        (br#"{"c\u006fde":"0"}"#, Some("0")),
        (br#"{"code":"a\"b"}"#, Some("a\"b")),
        (br#"{"x":{"code":1},"code":"0"}"#, Some("0")),
        (&shallow, Some("0")),
        (&deep, Some("0")),
        (br#"{"code":0,"code":1}"#, None),
        (br#"{"code":null}"#, None),
        (br#"{"code":true}"#, None),
        (br#"{"code":{}}"#, None),
        (br#"{"code":[0]}"#, None),
        (br#"{"x":{"code":0}}"#, None),
        (br#"{"code":0} x"#, None),
        (br#"{"code":0,}"#, None),
        (br#"{"code":01}"#, None),
        (br#"{"code":-}"#, None),
        (br#"{"code":0,"x":"a\qb"}"#, None),
        (b"{\"code\":0,\"x\":\"\x01\"}", None),
        (b"", None),
        (b"\x0c{\"code\":0}", None),
    ];
    for (body, expected) in pinned {
        let what = String::from_utf8_lossy(body);
        assert_eq!(koodrive_code(body).as_deref(), *expected, "{what}");
        assert_eq!(koodrive_code(body), code_by_serde(body), "{what}");
    }
    // Left to serde_json, or read as it reads them.
    let others: &[&[u8]] = &[
        br#"{"code":1.50}"#,
        br#"{"code":1E2}"#,
        br#"{"code":-0}"#,
        br#"[0]"#,
        br#"["0"]"#,
        b"{\"code\":\"0\",\"m\":\"\xff\"}",
        b"{\"code\":\"\xc3\xa9\"}",
    ];
    for body in others {
        let what = String::from_utf8_lossy(body);
        assert_eq!(koodrive_code(body), code_by_serde(body), "{what}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(512)))]

    /// The scan agrees with serde_json on bodies with one byte cut, changed or added.
    #[test]
    fn code_scan_agrees_with_serde_json_on_edited_bodies(
        base in proptest::sample::select(vec![
            r#"{"taskList":[{"taskId":"1","n":[1,{"a":null}]}],"code":"0","msg":"Success."}"#,
            r#" { "code" : 0 , "nextCursor" : "17" } "#,
            r#"{"code":-1.5e3,"msg":"a\"\\b"}"#,
            r#"{"error_code":"APIG.0308","code":"APIG.0308"}"#,
        ]),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        edit in 0..4u8,
        byte in proptest::sample::select(b" \t\n\r{}[],:\"\\/0123456789-+.eEtrufalsncod\x00\x1f\xff".to_vec()),
    ) {
        let mut body = base.as_bytes().to_vec();
        let at = at.index(body.len());
        match edit {
            0 => body.truncate(at),
            1 => body[at] = byte,
            2 => body.insert(at, byte),
            _ => {}
        }
        proptest::prop_assert_eq!(koodrive_code(&body), code_by_serde(&body));
    }
}

#[test]
fn a_code_read_while_normalizing_decides_without_reading_the_body_again() {
    let with_code = |status: u16, body: &'static str, code: Option<&str>| Page {
        code: Code::Known(code.map(Into::into)),
        ..page(status, body, &[("content-type", "application/json")])
    };
    // The body says otherwise: the code read while normalizing is the one that counts.
    assert!(storable(&with_code(200, "{}", Some("0")), 1000));
    assert!(!storable(&with_code(200, r#"{"code":0}"#, None), 1000));
    assert!(!storable(&with_code(200, r#"{"code":0}"#, Some("1")), 1000));
    assert!(upstream_failed(&with_code(400, "{}", Some("APIG.0308"))));
    assert!(!upstream_failed(&with_code(
        400,
        r#"{"code":"APIG.0308"}"#,
        Some("1")
    )));
    // Not read while normalizing: read from the body.
    let unknown = Page {
        code: Code::Unknown,
        ..page(
            200,
            r#"{"code":"0"}"#,
            &[("content-type", "application/json")],
        )
    };
    assert!(storable(&unknown, 1000));
}

#[test]
fn upstream_failures_versus_business_errors() {
    assert!(upstream_failed(&page(500, "{}", &[])));
    assert!(upstream_failed(&page(503, "", &[])));
    assert!(upstream_failed(&page(429, "", &[])));
    assert!(upstream_failed(&page(
        400,
        r#"{"code":"APIG.0308","msg":"throttled"}"#,
        &[]
    )));
    assert!(!upstream_failed(&page(
        400,
        r#"{"code":"13000201","msg":"x"}"#,
        &[]
    )));
    assert!(!upstream_failed(&page(200, r#"{"code":"0"}"#, &[])));
}

#[test]
fn freshness_windows() {
    let c = config();
    let w = c.windows();
    let s = Duration::from_secs;
    assert_eq!(freshness(s(0), w), Freshness::Fresh(s(3)));
    assert_eq!(freshness(s(2), w), Freshness::Fresh(s(1)));
    assert_eq!(freshness(s(3), w), Freshness::Revalidate);
    assert_eq!(freshness(s(12), w), Freshness::Revalidate);
    assert_eq!(freshness(s(13), w), Freshness::IfError);
    assert_eq!(freshness(s(62), w), Freshness::IfError);
    assert_eq!(freshness(s(63), w), Freshness::Dead);
    assert_eq!(retention(&c), s(63));
    assert_eq!(ttl_seconds(Duration::from_millis(500), w), 2);
    assert_eq!(ttl_seconds(s(5), w), -2);
}
