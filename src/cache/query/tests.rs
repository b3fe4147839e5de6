#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn canonical(query: &str) -> String {
    TaskListQuery::parse(Some(query)).unwrap().canonical()
}

/// The canonical form spelled out plainly: every parameter as text, the pairs sorted by name (a
/// stable sort: a repeated name's values stay in the order written), each name and value
/// percent-encoded, joined by `&`.
fn reference(query: &TaskListQuery) -> String {
    let status = (0..4u8)
        .filter(|s| query.status & (1 << s) != 0)
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut pairs: Vec<(String, String)> = query.other.clone();
    pairs.push(("pageSize".into(), query.page_size.to_string()));
    if let Some(c) = query.page_cursor {
        pairs.push(("pageCursor".into(), c.to_string()));
    }
    if !status.is_empty() {
        pairs.push(("status".into(), status));
    }
    if let Some(t) = query.task_type {
        pairs.push(("taskType".into(), t.to_string()));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, COMPONENT),
                utf8_percent_encode(v, COMPONENT)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn equal_queries_share_one_canonical_form() {
    let same = [
        "status=2&status=1",
        "status=1,2",
        "status=1&status=2&pageSize=100",
        "pageCursor=&status=2,1,2",
        "status=%31&status=2",
    ];
    for q in same {
        assert_eq!(canonical(q), "pageSize=100&status=1%2C2", "{q}");
    }
    assert_eq!(canonical(""), "pageSize=100");
    assert_eq!(
        canonical("taskType=0&status=2&pageSize=10&pageCursor=1723549107000&zeta=1&alpha=a+b"),
        "alpha=a%20b&pageCursor=1723549107000&pageSize=10&status=2&taskType=0&zeta=1"
    );
    assert_ne!(canonical("pageSize=10"), canonical("pageSize=11"));
    assert_ne!(canonical("x=1"), canonical("x=2"));
    // A repeated unknown parameter keeps its values' order: KooDrive may read the first only.
    assert_eq!(canonical("b=2&a=1&b=1"), "a=1&b=2&b=1&pageSize=100");
    assert_ne!(canonical("a=1&a=2"), canonical("a=2&a=1"));
    assert_eq!(canonical("a=1&b=1&a=2"), canonical("b=1&a=1&a=2"));
}

#[test]
fn bad_values_name_the_parameter_value_and_rule() {
    let cases = [
        ("taskType=abc", "taskType"),
        ("taskType=1&taskType=2", "taskType"),
        ("status=4", "status"),
        ("status=1,x", "status"),
        ("status=", "status"),
        ("status=-1", "status"),
        ("pageSize=0", "pageSize"),
        ("pageSize=101", "pageSize"),
        ("pageSize=ten", "pageSize"),
        ("pageSize=", "pageSize"),
        ("pageCursor=abc", "pageCursor"),
        ("pageCursor=99999999999999999999999", "pageCursor"),
        // Malformed encodings name their parameter (as written, when the name is the bad part).
        ("a=%zz", "a"),
        ("a=%4", "a"),
        ("pageSize=%ff%fe", "pageSize"),
        ("page%5=1", "page%5"),
    ];
    for (query, param) in cases {
        match TaskListQuery::parse(Some(query)) {
            Err(GatewayError::BadQuery { param: p, .. }) => assert_eq!(p, param, "{query}"),
            other => panic!("{query}: {other:?}"),
        }
    }
    let message = TaskListQuery::parse(Some("pageSize=500"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("pageSize") && message.contains("500") && message.contains("1 to 100"),
        "{message}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(512)))]

    #[test]
    fn parsing_arbitrary_queries_never_panics(query in ".{0,200}") {
        let _ = TaskListQuery::parse(Some(&query));
    }

    #[test]
    fn the_byte_splitter_splits_as_split_once_does(
        text in "[a&=\u{e9}\u{1f600}]{0,12}",
        byte in proptest::sample::select(vec![b'&', b'=']),
    ) {
        prop_assert_eq!(split_at_byte(&text, byte), text.split_once(char::from(byte)));
    }

    #[test]
    fn canonicalizing_twice_changes_nothing(
        status in proptest::collection::vec(0u8..=3, 0..5),
        size in 1u32..=100,
        cursor in proptest::option::of(any::<i64>()),
        task_type in proptest::option::of(any::<i64>()),
        other in proptest::collection::vec(("[a-zA-Z]{0,11}", "[ -~]{0,8}"), 0..4),
    ) {
        let mut parts: Vec<String> = status.iter().map(|s| format!("status={s}")).collect();
        parts.push(format!("pageSize={size}"));
        if let Some(c) = cursor { parts.push(format!("pageCursor={c}")); }
        if let Some(t) = task_type { parts.push(format!("taskType={t}")); }
        for (k, v) in &other {
            if ["status", "pageSize", "pageCursor", "taskType"].contains(&k.as_str()) { continue; }
            parts.push(format!("{}={}", utf8_percent_encode(k, COMPONENT), utf8_percent_encode(v, COMPONENT)));
        }
        let query = TaskListQuery::parse(Some(&parts.join("&"))).unwrap();
        let once = query.canonical();
        prop_assert_eq!(&once, &reference(&query));
        prop_assert_eq!(canonical(&once), once.clone());
        // The order of different names does not matter: equal queries give equal keys. (The
        // order of one name's values does, but for status, which is a set.)
        let name = |part: &String| part.split('=').next().unwrap_or_default().to_owned();
        parts.sort_by_key(|part| std::cmp::Reverse(name(part)));
        prop_assert_eq!(canonical(&parts.join("&")), once);
    }
}

/// The status table is the statuses of each set, in order, joined by a comma and encoded.
#[test]
fn the_status_table_spells_every_set() {
    for (bits, text) in STATUS_TEXT.iter().enumerate() {
        let joined = (0..4u8)
            .filter(|s| bits & (1 << s) != 0)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(*text, utf8_percent_encode(&joined, COMPONENT).to_string());
    }
}
