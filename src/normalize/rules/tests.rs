use serde::Deserialize;

use super::*;
use crate::normalize::config::{NormalizeConfig, RawNormalizeConfig};

#[derive(Debug, Deserialize)]
struct File {
    normalize: RawNormalizeConfig,
}

fn load(toml_text: &str) -> Result<NormalizeConfig, String> {
    let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    file.normalize.validate().map_err(|e| e.to_string())
}

#[test]
fn defaults_hold_the_built_in_rule() {
    let config = load("[normalize]").unwrap();
    assert_eq!(config.max_body, 8 * 1024 * 1024);
    let rule = config
        .rules
        .find(&Method::GET, "/koodrive/ose/v1/task/list")
        .unwrap();
    assert_eq!(rule.path(), "/koodrive/ose/v1/task/list");
    assert_eq!(
        load("[normalize]\nmax_body = \"64 KiB\"").unwrap().max_body,
        64 * 1024
    );
}

#[test]
fn find_picks_literal_paths_then_patterns_user_rules_first() {
    let config = load(
        r#"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/{id}"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/files/*"
        methods = ["post", "GET"]
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/result"
        [[normalize.rules]]
        path = "/koodrive/ose/v2/task/list"
        "#,
    )
    .unwrap();
    let table = &config.rules;
    let cases = [
        (
            Method::GET,
            "/koodrive/ose/v1/task/list",
            Some("/koodrive/ose/v1/task/list"),
        ),
        (
            Method::GET,
            "/koodrive/ose/v1/task/result",
            Some("/koodrive/ose/v1/task/result"),
        ),
        (
            Method::GET,
            "/koodrive/ose/v1/task/123",
            Some("/koodrive/ose/v1/task/{id}"),
        ),
        (Method::POST, "/koodrive/ose/v1/task/list", None),
        (Method::GET, "/koodrive/ose/v1/task/", None),
        (Method::GET, "/koodrive/ose/v1/task/list/x", None),
        (Method::GET, "/koodrive/ose/v1/task", None),
        (
            Method::POST,
            "/koodrive/ose/v1/files/all",
            Some("/koodrive/ose/v1/files/*"),
        ),
        (
            Method::GET,
            "/koodrive/ose/v1/files/a/b/c",
            Some("/koodrive/ose/v1/files/*"),
        ),
        (
            Method::GET,
            "/koodrive/ose/v2/task/list",
            Some("/koodrive/ose/v2/task/list"),
        ),
        (Method::GET, "koodrive/ose/v1/task/list", None),
        (Method::GET, "", None),
    ];
    for (method, path, expected) in cases {
        let found = table.find(&method, path).map(Rule::path);
        assert_eq!(found, expected, "{method} {path}");
    }
}

#[test]
fn user_rule_overrides_the_built_in_one() {
    let config = load(
        r#"
        [[normalize.rules]]
        path = "/koodrive/ose/v1/task/list"
        types = { code = "integer" }
        "#,
    )
    .unwrap();
    let rule = config
        .rules
        .find(&Method::GET, "/koodrive/ose/v1/task/list")
        .unwrap();
    assert_eq!(
        rule.shape.types,
        vec![("code".to_owned(), FieldType::Integer)]
    );
}

#[test]
fn config_errors_name_the_key() {
    let rule = |body: &str| format!("[[normalize.rules]]\npath = \"/a\"\n{body}");
    let cases = [
        (
            "[[normalize.rules]]\npath = \"/a\"\n[[normalize.rules]]\npath = \"/b\"\ntypes = { code = \"float\" }"
                .to_owned(),
            r#"normalize.rules[1].types.code: unknown type "float", expected "string" or "integer""#,
        ),
        (
            "[[normalize.rules]]\npath = \"task/list\"".to_owned(),
            r#"normalize.rules[0].path: "task/list" must start with '/'"#,
        ),
        (
            "[[normalize.rules]]\npath = \"/a/*/b\"".to_owned(),
            r#"normalize.rules[0].path: "/a/*/b" has '*' before the last segment"#,
        ),
        (
            "[[normalize.rules]]\npath = \"/a/x{id}\"".to_owned(),
            r#"normalize.rules[0].path: "/a/x{id}" has '{', '}' or '*' that is not a whole segment"#,
        ),
        (
            rule("methods = [\"GET\", \"G ET\"]"),
            r#"normalize.rules[0].methods[1]: invalid method "G ET""#,
        ),
        (
            rule("rename = { a = \"a\" }"),
            "normalize.rules[0].rename.a: needs two different, non-empty keys",
        ),
        (
            rule("[normalize.rules.arrays.taskList.objects.x]\ntypes = { status = \"int\" }"),
            r#"normalize.rules[0].arrays.taskList.objects.x.types.status: unknown type "int", expected "string" or "integer""#,
        ),
        ("[normalize]\nmax_body = 0".to_owned(), "normalize.max_body: must be between 1 byte and usize::MAX"),
    ];
    for (toml_text, expected) in cases {
        assert_eq!(load(&toml_text).unwrap_err(), expected, "{toml_text}");
    }
}

#[test]
fn unknown_config_keys_are_rejected() {
    for toml_text in [
        "[normalize]\nmax_bdy = 1",
        "[[normalize.rules]]\npath = \"/a\"\nrenames = {}",
        "[[normalize.rules]]\npath = \"/a\"\n[normalize.rules.arrays.x]\ntype = {}",
    ] {
        let err = load(toml_text).unwrap_err();
        assert!(err.contains("unknown field"), "{toml_text}: {err}");
    }
}

/// The literal prefix checked first never changes what a rule matches: each pattern against paths
/// around its edges, the table's answer against the segments alone.
#[test]
fn a_rules_literal_prefix_agrees_with_its_segments() {
    let by_segments = |pattern: &str, path: &str| {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in parse_pattern(pattern).unwrap() {
            match (segment, parts.next()) {
                (Segment::Rest, _) => return true,
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    };
    let patterns = [
        "/a/*", "/*", "/a/{x}", "/{x}/b", "/a/b", "/a/{x}/*", "/a/b/*", "/a/{x}/c",
    ];
    let paths = [
        "", "/", "//", "a", "/a", "/a/", "/ab", "/a/b", "/a/b/", "/a/b/c", "/a/bc", "/b", "/x/b",
        "//b", "/a//", "/a//c", "/a/x/c", "/a/x/cd",
    ];
    let mut matched = 0;
    for pattern in patterns {
        let config = load(&format!("[[normalize.rules]]\npath = \"{pattern}\"")).unwrap();
        for path in paths {
            let found = config.rules.find(&Method::GET, path).map(Rule::path) == Some(pattern);
            assert_eq!(
                found,
                by_segments(pattern, path),
                "{pattern} against {path:?}"
            );
            matched += usize::from(found);
        }
    }
    assert!(matched > 10, "the cases exercise matches too: {matched}");
}
