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
    #[serde(default, deserialize_with = "crate::config::units::optional_size")]
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
    /// Every key the shape names, with all it says about that key: one lookup per key of a body.
    keys: Vec<Key>,
    /// An open-addressed table over `keys`: each key's length, first sixteen bytes and index.
    slots: Vec<Option<Slot>>,
}

/// A key in [`Shape`]'s table: keys up to sixteen bytes (all of KooDrive's) are told apart by
/// their length and two words, without a byte comparison.
#[derive(Debug, Clone, Copy)]
struct Slot {
    len: usize,
    words: [u64; 2],
    index: usize,
}

/// What a shape says about one field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field<'a> {
    Array(&'a Shape),
    Object(&'a Shape),
    Typed(FieldType),
    Other,
}

/// A rename step a key goes through, in the order the renames are listed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// The key is rename `r`'s target: the documented key, which wins over the renamed one.
    Target(usize),
    /// The key is rename `r`'s source: it is written under the target's name.
    Source(usize),
}

/// One key a shape names, compiled.
#[derive(Debug, Clone)]
pub(super) struct Key {
    /// The key as it appears in a body (decoded).
    name: Box<[u8]>,
    /// The rename steps, and the name the key ends up with (`name` unless renamed).
    pub(super) steps: Vec<Step>,
    pub(super) renamed_to: Option<String>,
    /// What the shape says about the final name.
    pub(super) omit_null: bool,
    field: FieldIndex,
}

#[derive(Debug, Clone, Copy)]
enum FieldIndex {
    Array(usize),
    Object(usize),
    Typed(FieldType),
    Other,
}

impl Shape {
    pub(super) fn new(
        rename: Vec<(String, String)>,
        omit_null: Vec<String>,
        types: Vec<(String, FieldType)>,
        arrays: Vec<(String, Shape)>,
        objects: Vec<(String, Shape)>,
    ) -> Shape {
        let mut shape = Shape {
            rename,
            omit_null,
            types,
            arrays,
            objects,
            keys: Vec::new(),
            slots: Vec::new(),
        };
        let mut names: Vec<&str> = Vec::new();
        let all = shape.rename.iter().flat_map(|(from, to)| [from, to]);
        let all = all
            .chain(&shape.omit_null)
            .chain(shape.types.iter().map(|(f, _)| f))
            .chain(shape.arrays.iter().map(|(f, _)| f))
            .chain(shape.objects.iter().map(|(f, _)| f));
        for name in all {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let keys: Vec<Key> = names.iter().map(|name| shape.compile_key(name)).collect();
        // At most half full, so a probe ends at an empty slot soon.
        let mut slots = vec![None; (keys.len() * 2).next_power_of_two().max(2)];
        let mask = slots.len() - 1;
        for (index, key) in keys.iter().enumerate() {
            let (len, words) = (key.name.len(), words(&key.name));
            let mut slot = hash(len, words[0]) & mask;
            while slots[slot].is_some() {
                slot = (slot + 1) & mask;
            }
            slots[slot] = Some(Slot { len, words, index });
        }
        shape.slots = slots;
        shape.keys = keys;
        shape
    }

    /// Follows the renames as they are listed (a key may be renamed more than once).
    fn compile_key(&self, name: &str) -> Key {
        let mut steps = Vec::new();
        let mut current = name;
        for (r, (from, to)) in self.rename.iter().enumerate() {
            if current == to {
                steps.push(Step::Target(r));
            } else if current == from {
                steps.push(Step::Source(r));
                current = to;
            }
        }
        let field = if let Some(i) = self.arrays.iter().position(|(f, _)| f == current) {
            FieldIndex::Array(i)
        } else if let Some(i) = self.objects.iter().position(|(f, _)| f == current) {
            FieldIndex::Object(i)
        } else if let Some((_, ty)) = self.types.iter().find(|(f, _)| f == current) {
            FieldIndex::Typed(*ty)
        } else {
            FieldIndex::Other
        };
        Key {
            name: name.as_bytes().into(),
            steps,
            renamed_to: (current != name).then(|| current.to_owned()),
            omit_null: self.omit_null.iter().any(|f| f == current),
            field,
        }
    }

    /// What the shape says about `name` (a key as decoded from a body), if anything.
    pub(super) fn key(&self, name: &[u8]) -> Option<&Key> {
        self.key_in(name, name.len())
    }

    /// [`Shape::key`] for the key that is the first `len` bytes of `text`: when `text` goes on past
    /// the key (a body does, with at least the closing quote), its first sixteen bytes are read in
    /// one load.
    pub(super) fn key_in(&self, text: &[u8], len: usize) -> Option<&Key> {
        let name = text.get(..len)?;
        // The sixteen bytes in one load where the text goes on far enough (a key is followed by
        // at least its closing quote), the bytes past the key masked off.
        let words = match text.first_chunk::<16>() {
            Some(chunk) if (1..=16).contains(&len) => {
                let all = u128::from_le_bytes(*chunk) & (u128::MAX >> (128 - 8 * len));
                [all as u64, (all >> 64) as u64]
            }
            _ => words(name),
        };
        let mask = self.slots.len().wrapping_sub(1);
        let mut slot = hash(len, words[0]) & mask;
        while let Some(&Some(entry)) = self.slots.get(slot) {
            // Sixteen bytes and the length decide it for short keys; longer ones compare the rest.
            if entry.len == len && entry.words == words {
                let key = self.keys.get(entry.index)?;
                if len <= 16 || key.name.get(16..) == name.get(16..) {
                    return Some(key);
                }
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// The field a compiled key ends up as.
    pub(super) fn field(&self, key: &Key) -> Field<'_> {
        match key.field {
            FieldIndex::Array(i) => self
                .arrays
                .get(i)
                .map_or(Field::Other, |(_, s)| Field::Array(s)),
            FieldIndex::Object(i) => self
                .objects
                .get(i)
                .map_or(Field::Other, |(_, s)| Field::Object(s)),
            FieldIndex::Typed(ty) => Field::Typed(ty),
            FieldIndex::Other => Field::Other,
        }
    }
}

impl Key {
    /// Neither renamed nor dropped: only its value's type may change.
    pub(super) fn plain(&self) -> bool {
        self.steps.is_empty() && !self.omit_null
    }

    /// The name the key is written under.
    pub(super) fn final_name(&self) -> &str {
        match &self.renamed_to {
            Some(to) => to,
            None => std::str::from_utf8(&self.name).unwrap_or_default(),
        }
    }
}

/// Where a key's probe starts.
fn hash(len: usize, head: u64) -> usize {
    let mixed = (head ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 40) as usize
}

/// Up to the first sixteen bytes of a key, as two numbers: with its length, most keys differ here.
fn words(name: &[u8]) -> [u64; 2] {
    let word = |bytes: &[u8]| {
        let bytes = bytes.iter().take(8).rev();
        bytes.fold(0, |word, &byte| word << 8 | u64::from(byte))
    };
    [word(name), word(name.get(8..).unwrap_or_default())]
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
const TASK_CREATE_PATH: &str = "/koodrive/ose/v1/task/create";
const TASK_RESULT_PATH: &str = "/koodrive/ose/v1/task/result";
const TASK_ONE_PATH: &str = "/koodrive/ose/v1/task/{task_id}";
const TASK_DST_USER_PATH: &str = "/koodrive/ose/v1/task/dstUserInfo/{src_user_id}";
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
        Ok(Shape::new(rename, self.omit_null, types, arrays, objects))
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
        let task_info = Shape::new(Vec::new(), Vec::new(), task_info, Vec::new(), Vec::new());
        let shape = Shape::new(
            vec![("taskListDtos".to_owned(), "taskList".to_owned())],
            vec!["nextCursor".to_owned()],
            typed(FieldType::String, &["code", "msg", "nextCursor"]),
            vec![("taskList".to_owned(), task_info)],
            Vec::new(),
        );
        let segments = parse_pattern(TASK_LIST_PATH).unwrap_or_default();
        Rule {
            path: TASK_LIST_PATH.to_owned(),
            segments,
            methods: vec![Method::GET],
            shape,
        }
    }

    /// The built-in rules of the other task endpoints (authentication.md, "Task endpoints"):
    /// task APIs declare `code` a string, and a task's fields are TaskInfo's.
    pub fn task_endpoints() -> Vec<Rule> {
        let task_info = || {
            let mut fields = typed(FieldType::String, &TASK_INFO_STRINGS);
            fields.extend(typed(FieldType::Integer, &["taskType", "status"]));
            Shape::new(Vec::new(), Vec::new(), fields, Vec::new(), Vec::new())
        };
        let rule = |method: Method, path: &str, strings: &[&str], objects: Vec<(String, Shape)>| {
            let mut strings = strings.to_vec();
            strings.extend(["code", "msg"]);
            let shape = Shape::new(
                Vec::new(),
                Vec::new(),
                typed(FieldType::String, &strings),
                Vec::new(),
                objects,
            );
            Rule {
                path: path.to_owned(),
                segments: parse_pattern(path).unwrap_or_default(),
                methods: vec![method],
                shape,
            }
        };
        vec![
            rule(Method::POST, TASK_CREATE_PATH, &["taskId"], Vec::new()),
            rule(
                Method::GET,
                TASK_RESULT_PATH,
                &[],
                vec![("taskResult".to_owned(), task_info())],
            ),
            rule(
                Method::GET,
                TASK_ONE_PATH,
                &[],
                vec![("taskDto".to_owned(), task_info())],
            ),
            rule(Method::GET, TASK_DST_USER_PATH, &[], Vec::new()),
        ]
    }

    /// Whether this rule makes `code` a string, as the task APIs declare it: their error bodies'
    /// numeric codes become strings too; elsewhere KooDrive's integer code is kept.
    pub fn code_is_string(&self) -> bool {
        self.shape
            .types
            .iter()
            .any(|(name, ty)| name == "code" && *ty == FieldType::String)
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
        rules.extend(Rule::task_endpoints());
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

    #[test]
    fn keys_are_found_by_their_whole_name() {
        let names = [
            "createTime",
            "createTimeX",
            "createTimf",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqrstuvwxyz",
            "",
            "é",
        ];
        let shape = Shape::new(
            vec![("old".into(), "createTime".into())],
            Vec::new(),
            typed(FieldType::String, &names),
            Vec::new(),
            Vec::new(),
        );
        for name in names.iter().chain(&["old"]) {
            let key = shape.key(name.as_bytes()).expect(name);
            assert_eq!(&*key.name, name.as_bytes());
            // In a body the key is followed by its closing quote and more.
            let text = format!("{name}\":1,\"zzzzzzzz\":2}}");
            let key = shape.key_in(text.as_bytes(), name.len()).expect(name);
            assert_eq!(&*key.name, name.as_bytes());
        }
        for other in [
            "createTim",
            "createTimeY",
            "b",
            "abcdefgi",
            "abcdefghi",
            "abcdefghijklmnoq",
            "abcdefghijklmnopr",
            "abcdefghijklmnopqrstuvwxyZ",
            "ol",
            "olds",
        ] {
            assert!(shape.key(other.as_bytes()).is_none(), "{other}");
            let text = format!("{other}\"}}");
            assert!(
                shape.key_in(text.as_bytes(), other.len()).is_none(),
                "{other}"
            );
        }
        let old = shape.key(b"old").unwrap();
        assert_eq!(old.final_name(), "createTime");
        assert!(matches!(shape.field(old), Field::Typed(FieldType::String)));
    }

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
