//! The rule table: which routes are normalized and how, as data. The built-in rules (the task
//! list and the other task endpoints) come from the documented schema; user rules come from
//! [`super::RawNormalizeConfig`].

use http::Method;

use super::shape::{FieldType, Shape};

/// A compiled rule: where it applies and the shape of the body.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) path: String,
    pub(super) segments: Vec<Segment>,
    /// What every path the rule matches starts with (see [`literal_prefix`]).
    pub(super) prefix: Prefix,
    pub(super) methods: Vec<Method>,
    pub(super) shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// The literal start of a rule's path, checked with one comparison before its segments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prefix {
    /// No `{param}` or `*`: a path matches exactly when it is the rule's path.
    Exact,
    /// The first this many bytes of the rule's path begin every path it matches.
    Starts(usize),
}

/// The [`Prefix`] of a rule path as [`parse_pattern`] accepts it: its literal segments end at the
/// first `{` or `*` (a literal segment holds neither). Before a `{param}` the `/` is part of every
/// match (the parameter is not empty); before a final `*` it is not (`/a/*` matches `/a`).
pub(super) fn literal_prefix(path: &str) -> Prefix {
    match path.bytes().position(|b| b == b'{' || b == b'*') {
        None => Prefix::Exact,
        Some(at) if path.as_bytes().get(at) == Some(&b'*') => Prefix::Starts(at.saturating_sub(1)),
        Some(at) => Prefix::Starts(at),
    }
}

/// All rules, in the order they are tried.
#[derive(Debug, Clone)]
pub struct RuleTable {
    rules: Vec<Rule>,
}

use crate::route::TASK_LIST_PATH;

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

pub(super) fn typed(ty: FieldType, names: &[&str]) -> Vec<(String, FieldType)> {
    names.iter().map(|name| ((*name).to_owned(), ty)).collect()
}

/// Splits `/a/{id}/*` into segments; the error says what is wrong with the pattern.
pub(super) fn parse_pattern(path: &str) -> Result<Vec<Segment>, &'static str> {
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
            prefix: literal_prefix(TASK_LIST_PATH),
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
                prefix: literal_prefix(path),
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
        match self.prefix {
            Prefix::Exact => return path == self.path,
            Prefix::Starts(len) => {
                let prefix = self.path.as_bytes().get(..len).unwrap_or_default();
                if !path.as_bytes().starts_with(prefix) {
                    return false;
                }
            }
        }
        let Some(rest) = path.as_bytes().strip_prefix(b"/") else {
            return false;
        };
        // Split by a byte, not `str::split`'s char searcher: every forwarded request runs this
        // over each rule for its method.
        let mut parts = rest.split(|&b| b == b'/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Rest, _) => return true,
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                (Segment::Literal(lit), Some(part)) if lit.as_bytes() == part => {}
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
mod tests;
