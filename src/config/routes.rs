//! `[[cache.routes]]`: cache policies per route, as data. A route is a `GET` path under
//! `/koodrive/ose/v1/task/` (literal, or with `{name}` segments), its TTL and stale windows, and
//! the query parameters its key is made of. The task list is the built-in first route (its
//! policy is `[cache]`'s own keys); the two task polls are built-in defaults that an entry with
//! the same path replaces. Literal paths are matched before patterns, and KooDrive's literal task
//! endpoints (`list`, `result`, `create`) never match a `{name}` segment.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::route::{TASK_LIST_PATH, TASK_PREFIX};
use crate::units;

/// The task-status poll, `GET /task/{id}`.
pub const TASK_POLL_PATH: &str = "/koodrive/ose/v1/task/{id}";
/// The task-result poll, `GET /task/result?taskId=`.
pub const TASK_RESULT_PATH: &str = "/koodrive/ose/v1/task/result";

/// KooDrive's literal task endpoints: never a task id.
const LITERALS: [&str; 3] = ["list", "result", "create"];

/// How long a stored answer is fresh, then servable stale while refreshed, or if KooDrive fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

/// The poll routes' default windows.
const POLL_WINDOWS: Windows = Windows {
    ttl: Duration::from_secs(1),
    stale_while_revalidate: Duration::from_secs(2),
    stale_if_error: Duration::from_secs(30),
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// One cached route, validated; a zero `ttl` keeps its path from being cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRoute {
    /// As configured (`/koodrive/ose/v1/task/{id}`); part of every key of the route.
    pub path: String,
    segments: Vec<Segment>,
    pub windows: Windows,
    /// The query parameters the key holds, sorted; a request with any other is not cached.
    pub key_params: Vec<String>,
}

impl CacheRoute {
    fn is_literal(&self) -> bool {
        !self.segments.contains(&Segment::Param)
    }

    /// Whether `path` is this route's.
    pub fn matches(&self, path: &str) -> bool {
        let mut given = path.split('/');
        let mut mine = self.segments.iter();
        loop {
            match (given.next(), mine.next()) {
                (None, None) => return true,
                (Some(g), Some(Segment::Literal(l))) if g == l => {}
                (Some(g), Some(Segment::Param)) if is_param_value(g) => {}
                _ => return false,
            }
        }
    }
}

/// A `{name}` segment's value: letters, digits, `-` and `_`, and not a literal endpoint.
fn is_param_value(segment: &str) -> bool {
    !segment.is_empty()
        && !LITERALS.contains(&segment)
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The routes in match order: literals first, then patterns, each in table order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheRoutes(Vec<CacheRoute>);

impl CacheRoutes {
    /// The route a `GET` of `path` is cached under, if any (the task list is served apart).
    pub fn find(&self, path: &str) -> Option<&CacheRoute> {
        self.0.iter().find(|route| route.matches(path))
    }

    pub fn iter(&self) -> impl Iterator<Item = &CacheRoute> {
        self.0.iter()
    }
}

/// One `[[cache.routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRoute {
    pub path: String,
    #[serde(deserialize_with = "units::duration")]
    pub ttl: Duration,
    #[serde(default, deserialize_with = "units::option_duration")]
    pub stale_while_revalidate: Option<Duration>,
    #[serde(default, deserialize_with = "units::option_duration")]
    pub stale_if_error: Option<Duration>,
    #[serde(default)]
    pub key_params: Vec<String>,
}

/// The built-in poll routes, replaced by entries with their paths, then the other entries.
pub fn routes_from_raw(
    raw: Vec<RawCacheRoute>,
    check: impl Fn(&str, Duration) -> Result<Duration, ConfigError>,
) -> Result<CacheRoutes, ConfigError> {
    let mut routes = vec![
        builtin(TASK_RESULT_PATH, &["taskId"]),
        builtin(TASK_POLL_PATH, &[]),
    ];
    for (i, entry) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("cache.routes[{i}].{field}");
        let route = entry.compile(&key, &check)?;
        if routes[2..].iter().any(|r| r.path == route.path) {
            return Err(invalid(&key("path"), "is already in the table"));
        }
        match routes[..2].iter().position(|r| r.path == route.path) {
            Some(builtin) => routes[builtin] = route,
            None => routes.push(route),
        }
    }
    let (literals, patterns): (Vec<_>, Vec<_>) = routes.into_iter().partition(|r| r.is_literal());
    Ok(CacheRoutes(literals.into_iter().chain(patterns).collect()))
}

fn builtin(path: &str, key_params: &[&str]) -> CacheRoute {
    CacheRoute {
        path: path.to_owned(),
        segments: segments(path).unwrap_or_default(),
        windows: POLL_WINDOWS,
        key_params: key_params.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn segments(path: &str) -> Result<Vec<Segment>, &'static str> {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(rest) => match rest.strip_suffix('}') {
                Some(name) if !name.is_empty() && is_param_value(name) => Ok(Segment::Param),
                _ => Err("a {name} segment needs a name of letters, digits, - or _"),
            },
            None if segment.contains(['{', '}', '?', '#', '%']) => {
                Err("a literal segment cannot hold {, }, ?, # or %")
            }
            None => Ok(Segment::Literal(segment.to_owned())),
        })
        .collect()
}

impl RawCacheRoute {
    fn compile(
        self,
        key: &impl Fn(&str) -> String,
        check: &impl Fn(&str, Duration) -> Result<Duration, ConfigError>,
    ) -> Result<CacheRoute, ConfigError> {
        let under = self
            .path
            .strip_prefix(TASK_PREFIX)
            .is_some_and(|rest| !rest.is_empty());
        if !under {
            // Only task resources: a task write invalidates them (the writer's generation).
            return Err(invalid(
                &key("path"),
                format!("must be a path under {TASK_PREFIX}"),
            ));
        }
        if self.path == TASK_LIST_PATH {
            return Err(invalid(
                &key("path"),
                "the task list's policy is [cache] ttl, stale_while_revalidate and stale_if_error",
            ));
        }
        let segments = segments(&self.path).map_err(|why| invalid(&key("path"), why))?;
        // Zero: the route is not cached (how a built-in poll is turned off).
        let ttl = check(&key("ttl"), self.ttl)?;
        let stale = |field: &str, value: Option<Duration>, default: Duration| {
            check(&key(field), value.unwrap_or(default))
        };
        let windows = Windows {
            ttl,
            stale_while_revalidate: stale(
                "stale_while_revalidate",
                self.stale_while_revalidate,
                POLL_WINDOWS.stale_while_revalidate,
            )?,
            stale_if_error: stale(
                "stale_if_error",
                self.stale_if_error,
                POLL_WINDOWS.stale_if_error,
            )?,
        };
        let mut key_params = self.key_params;
        let well_formed =
            |p: &String| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_params.iter().all(well_formed) {
            return Err(invalid(
                &key("key_params"),
                "each must be a parameter name of letters, digits or _",
            ));
        }
        key_params.sort();
        key_params.dedup();
        Ok(CacheRoute {
            path: self.path,
            segments,
            windows,
            key_params,
        })
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
