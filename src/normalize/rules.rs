//! The rule table: which routes are normalized and how, as data.
//!
//! The operator's TOML (`[[normalize.rules]]`) is read into the `Raw*` structs, and
//! [`RawNormalizeConfig::validate`] compiles it, once, into a [`NormalizeConfig`] whose
//! [`RuleTable`] holds the built-in task-list rule plus the user's rules.

use std::collections::BTreeMap;

use bytesize::ByteSize;
use http::Method;
use serde::Deserialize;

/// `[normalize]` as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNormalizeConfig {
    /// Largest (decoded) body the gateway buffers to normalize; larger ones stream through. 8 MiB if unset.
    pub max_body: Option<ByteSize>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// One `[[normalize.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// An exact path, or a pattern where `{name}` matches one segment and a trailing `*` the rest.
    pub path: String,
    /// Methods the rule applies to; `["GET"]` if unset.
    pub methods: Option<Vec<String>>,
    // The fields of a top-level `RawShape`, repeated: serde's `flatten` ignores `deny_unknown_fields`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    #[serde(default)]
    pub omit_null: Vec<String>,
    #[serde(default)]
    pub arrays: BTreeMap<String, RawShape>,
    #[serde(default)]
    pub objects: BTreeMap<String, RawShape>,
}

/// What to do with one JSON object: the top level of a body, or a named field inside it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShape {
    /// Key renames, from -> to; when both keys are present the target wins and `from` is dropped.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Field types: "string" or "integer".
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Fields removed when they are `null` (for "absent means none", like `nextCursor`).
    #[serde(default)]
    pub omit_null: Vec<String>,
    /// Arrays of objects (named after renames): the shape applies to each element.
    #[serde(default)]
    pub arrays: BTreeMap<String, RawShape>,
    /// Object fields (named after renames): the shape applies to the object.
    #[serde(default)]
    pub objects: BTreeMap<String, RawShape>,
}

/// The validated `[normalize]` section.
#[derive(Debug, Clone)]
pub struct NormalizeConfig {
    /// Largest body, in bytes, that is buffered and normalized.
    pub max_body: usize,
    pub rules: RuleTable,
}

/// A config mistake, naming the key where it is.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{key}: {path:?} {problem}")]
    Path {
        key: String,
        path: String,
        problem: &'static str,
    },
    #[error("{key}: unknown type {name:?}, expected \"string\" or \"integer\"")]
    UnknownType { key: String, name: String },
    #[error("{key}: invalid method {name:?}")]
    Method {
        key: String,
        name: String,
        #[source]
        source: http::method::InvalidMethod,
    },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: &'static str },
}

/// The documented type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
        }
    }
}

/// A compiled [`RawShape`].
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub(super) rename: Vec<(String, String)>,
    pub(super) omit_null: Vec<String>,
    pub(super) types: Vec<(String, FieldType)>,
    pub(super) arrays: Vec<(String, Shape)>,
    pub(super) objects: Vec<(String, Shape)>,
}

/// What a shape says about one field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field<'a> {
    Array(&'a Shape),
    Object(&'a Shape),
    Typed(FieldType),
    Other,
}

impl Shape {
    /// The one lookup per field of a body (lists are short: a linear scan beats hashing).
    pub(super) fn field(&self, name: &str) -> Field<'_> {
        let named = |field: &String| field == name;
        if let Some((_, shape)) = self.arrays.iter().find(|(f, _)| named(f)) {
            Field::Array(shape)
        } else if let Some((_, shape)) = self.objects.iter().find(|(f, _)| named(f)) {
            Field::Object(shape)
        } else if let Some((_, ty)) = self.types.iter().find(|(f, _)| named(f)) {
            Field::Typed(*ty)
        } else {
            Field::Other
        }
    }
}

/// A compiled rule: where it applies and the shape of the body.
#[derive(Debug, Clone)]
pub struct Rule {
    path: String,
    segments: Vec<Segment>,
    methods: Vec<Method>,
    pub(super) shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// All rules, in the order they are tried.
#[derive(Debug, Clone)]
pub struct RuleTable {
    rules: Vec<Rule>,
}

const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(8);
const TASK_LIST_PATH: &str = "/koodrive/ose/v1/task/list";
/// TaskInfo fields documented as strings; `taskType` and `status` are integers.
const TASK_INFO_STRINGS: [&str; 10] = [
    "taskId",
    "taskName",
    "tenantId",
    "userId",
    "initParams",
    "locale",
    "resultCode",
    "createTime",
    "startTime",
    "endTime",
];

impl RawNormalizeConfig {
    /// Checks every rule and compiles the table; errors name the key (`normalize.rules[1].types.code`).
    pub fn validate(self) -> Result<NormalizeConfig, RuleError> {
        let max_body = self.max_body.unwrap_or(DEFAULT_MAX_BODY).as_u64();
        let max_body = usize::try_from(max_body)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                invalid(
                    "normalize.max_body",
                    "must be between 1 byte and usize::MAX",
                )
            })?;
        let user = self.rules.into_iter().enumerate();
        let user = user.map(|(i, raw)| raw.compile(&format!("normalize.rules[{i}]")));
        let rules = user.collect::<Result<Vec<_>, _>>()?;
        Ok(NormalizeConfig {
            max_body,
            rules: RuleTable::new(rules),
        })
    }
}

impl RawRule {
    fn compile(self, key: &str) -> Result<Rule, RuleError> {
        let segments = parse_pattern(&self.path).map_err(|problem| RuleError::Path {
            key: format!("{key}.path"),
            path: self.path.clone(),
            problem,
        })?;
        let names = self.methods.unwrap_or_else(|| vec!["GET".to_owned()]);
        let methods = names.iter().enumerate().map(|(i, name)| {
            Method::from_bytes(name.to_ascii_uppercase().as_bytes()).map_err(|source| {
                RuleError::Method {
                    key: format!("{key}.methods[{i}]"),
                    name: name.clone(),
                    source,
                }
            })
        });
        let methods = methods.collect::<Result<Vec<_>, _>>()?;
        let shape = RawShape {
            rename: self.rename,
            types: self.types,
            omit_null: self.omit_null,
            arrays: self.arrays,
            objects: self.objects,
        };
        let shape = shape.compile(key)?;
        Ok(Rule {
            path: self.path,
            segments,
            methods,
            shape,
        })
    }
}

impl RawShape {
    fn compile(self, key: &str) -> Result<Shape, RuleError> {
        let mut rename = Vec::with_capacity(self.rename.len());
        for (from, to) in self.rename {
            if from.is_empty() || to.is_empty() || from == to {
                return Err(invalid(
                    &format!("{key}.rename.{from}"),
                    "needs two different, non-empty keys",
                ));
            }
            rename.push((from, to));
        }
        let mut types = Vec::with_capacity(self.types.len());
        for (field, name) in self.types {
            let ty = match name.as_str() {
                "string" => FieldType::String,
                "integer" => FieldType::Integer,
                _ => {
                    return Err(RuleError::UnknownType {
                        key: format!("{key}.types.{field}"),
                        name,
                    })
                }
            };
            types.push((field, ty));
        }
        let nested = |kind: &str, map: BTreeMap<String, RawShape>| {
            let compiled = map.into_iter().map(|(field, raw)| {
                let shape = raw.compile(&format!("{key}.{kind}.{field}"))?;
                Ok((field, shape))
            });
            compiled.collect::<Result<Vec<_>, RuleError>>()
        };
        let arrays = nested("arrays", self.arrays)?;
        let objects = nested("objects", self.objects)?;
        Ok(Shape {
            rename,
            omit_null: self.omit_null,
            types,
            arrays,
            objects,
        })
    }
}

fn typed(ty: FieldType, names: &[&str]) -> Vec<(String, FieldType)> {
    names.iter().map(|name| ((*name).to_owned(), ty)).collect()
}

fn invalid(key: &str, problem: &'static str) -> RuleError {
    RuleError::Invalid {
        key: key.to_owned(),
        problem,
    }
}

/// Splits `/a/{id}/*` into segments; the error says what is wrong with the pattern.
fn parse_pattern(path: &str) -> Result<Vec<Segment>, &'static str> {
    let rest = path.strip_prefix('/').ok_or("must start with '/'")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    let segment = |(i, part): (usize, &str)| match part {
        "*" if i == last => Ok(Segment::Rest),
        "*" => Err("has '*' before the last segment"),
        _ if part.starts_with('{') && part.ends_with('}') && part.len() > 2 => Ok(Segment::Param),
        _ if part.contains(['{', '}', '*']) => {
            Err("has '{', '}' or '*' that is not a whole segment")
        }
        _ => Ok(Segment::Literal(part.to_owned())),
    };
    parts.into_iter().enumerate().map(segment).collect()
}

impl Rule {
    /// The rule for `GET /koodrive/ose/v1/task/list`, from the documented schema.
    pub fn task_list() -> Rule {
        let mut task_info = typed(FieldType::String, &TASK_INFO_STRINGS);
        task_info.extend(typed(FieldType::Integer, &["taskType", "status"]));
        let task_info = Shape {
            types: task_info,
            ..Shape::default()
        };
        let shape = Shape {
            rename: vec![("taskListDtos".to_owned(), "taskList".to_owned())],
            omit_null: vec!["nextCursor".to_owned()],
            types: typed(FieldType::String, &["code", "msg", "nextCursor"]),
            arrays: vec![("taskList".to_owned(), task_info)],
            objects: Vec::new(),
        };
        let segments = parse_pattern(TASK_LIST_PATH).unwrap_or_default();
        Rule {
            path: TASK_LIST_PATH.to_owned(),
            segments,
            methods: vec![Method::GET],
            shape,
        }
    }

    /// The path or pattern as configured: a bounded label for logs and metrics.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn is_pattern(&self) -> bool {
        self.segments
            .iter()
            .any(|s| !matches!(s, Segment::Literal(_)))
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if !self.methods.contains(method) {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Rest, _) => return true,
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl RuleTable {
    /// Built-in rules plus `user` rules. Exact paths are tried before patterns (so `/task/list`
    /// beats `/task/{id}`); within each kind, user rules come first, in config order, so they override.
    pub fn new(user: Vec<Rule>) -> RuleTable {
        let mut rules = user;
        rules.push(Rule::task_list());
        rules.sort_by_key(Rule::is_pattern); // stable: keeps user-before-built-in within each kind
        RuleTable { rules }
    }

    /// The rule for this request, if any; `path` is the URI path without the query.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(method, path))
    }
}

impl Default for RuleTable {
    fn default() -> Self {
        RuleTable::new(Vec::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
}
