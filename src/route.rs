//! The route table: which policy each request gets. Literal paths are matched before the
//! `/task/{id}` pattern, as KooDrive's reference asks.

use http::Method;

pub const TASK_PREFIX: &str = "/koodrive/ose/v1/task/";
pub const TASK_LIST_PATH: &str = "/koodrive/ose/v1/task/list";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /task/list`: validated, cached, normalized. `HEAD` too, answered as `GET` is without
    /// the body (nginx's `proxy_cache_convert_head`, Varnish's default).
    TaskList,
    /// Any other method under `/task/`: a write; success invalidates that identity's lists.
    TaskWrite,
    /// `GET`/`HEAD` of another task resource (`/task/{id}`, `/task/result`, ...).
    TaskRead,
    /// Everything else: forwarded as it is.
    Other,
}

impl Route {
    /// Every route, for the series exported from the start.
    pub const ALL: [Route; 4] = [
        Route::TaskList,
        Route::TaskRead,
        Route::TaskWrite,
        Route::Other,
    ];

    pub fn of(method: &Method, path: &str) -> Route {
        let read = method == Method::GET || method == Method::HEAD;
        let Some(rest) = path.strip_prefix(TASK_PREFIX) else {
            // A write that KooDrive's server may still route under `/task/` (a doubled slash,
            // a dot segment, an encoded letter) must invalidate too: better a needless refetch
            // than a writer reading its old lists. Reads keep their literal route.
            return match !read && loosely_under_task_prefix(path) {
                true => Route::TaskWrite,
                false => Route::Other,
            };
        };
        match (read, rest) {
            (true, "list") => Route::TaskList,
            (true, _) => Route::TaskRead,
            (false, _) => Route::TaskWrite,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Route::TaskList => "task_list",
            Route::TaskWrite => "task_write",
            Route::TaskRead => "task_read",
            Route::Other => "other",
        }
    }
}

/// Whether `path`, read as loosely as any server might, is under [`TASK_PREFIX`]: percent-encoding
/// decoded (`%2F` too), `\` taken for `/`, empty and `.` segments dropped, `..` applied, `;`
/// parameters cut from each segment, letters compared ignoring case. Only paths with one of those
/// features are read this way; the rest are simply not under the prefix.
fn loosely_under_task_prefix(path: &str) -> bool {
    const PREFIX: [&[u8]; 4] = [b"koodrive", b"ose", b"v1", b"task"];
    let unusual = |b: &u8| matches!(b, b'%' | b'.' | b'\\' | b';') || b.is_ascii_uppercase();
    if !(path.bytes().any(|b| unusual(&b)) || path.contains("//")) {
        return false;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| matches!(b, b'/' | b'\\')) {
        let segment = segment.split(|b| *b == b';').next().unwrap_or_default();
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    segments.len() >= PREFIX.len()
        && PREFIX
            .iter()
            .zip(&segments)
            .all(|(want, got)| want.eq_ignore_ascii_case(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_before_patterns() {
        let cases = [
            (Method::GET, "/koodrive/ose/v1/task/list", Route::TaskList),
            (Method::HEAD, "/koodrive/ose/v1/task/list", Route::TaskList),
            (Method::POST, "/koodrive/ose/v1/task/list", Route::TaskWrite),
            (
                Method::POST,
                "/koodrive/ose/v1/task/create",
                Route::TaskWrite,
            ),
            (Method::GET, "/koodrive/ose/v1/task/result", Route::TaskRead),
            (
                Method::GET,
                "/koodrive/ose/v1/task/1486254586942472064",
                Route::TaskRead,
            ),
            (
                Method::GET,
                "/koodrive/ose/v1/task/list/extra",
                Route::TaskRead,
            ),
            (Method::GET, "/koodrive/ose/v1/tasks", Route::Other),
            (Method::POST, "/koodrive/ose/v1/files/create", Route::Other),
        ];
        for (method, path, route) in cases {
            assert_eq!(Route::of(&method, path), route, "{method} {path}");
        }
    }

    #[test]
    fn a_write_to_a_loosely_written_task_path_is_a_task_write() {
        let writes = [
            "/koodrive/ose/v1//task/create",
            "//koodrive/ose/v1/task/create",
            "/koodrive/ose/v1/./task/create",
            "/koodrive/ose/v1/x/../task/create",
            "/koodrive/ose/v1/%74ask/create",
            "/koodrive/ose/v1/task%2Fcreate",
            "/koodrive\\ose\\v1\\task\\create",
            "/koodrive/ose/v1;x=1/task/create",
            "/KooDrive/ose/v1/Task/create",
        ];
        for path in writes {
            assert_eq!(Route::of(&Method::POST, path), Route::TaskWrite, "{path}");
            // Reads keep their literal route: a loose path is forwarded, never cached.
            assert_eq!(Route::of(&Method::GET, path), Route::Other, "{path}");
        }
        let others = [
            "/koodrive/ose/v1/tasks/create",
            "/koodrive/ose/v1/%2e%2e/task/create",
            "/koodrive/ose/v2//task/create",
            "/koodrive/ose/v1",
        ];
        for path in others {
            assert_eq!(Route::of(&Method::POST, path), Route::Other, "{path}");
        }
    }
}
