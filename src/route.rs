//! The route table: which policy each request gets. Literal paths are matched before the
//! `/task/{id}` pattern, as KooDrive's reference asks.

use http::Method;

pub const TASK_PREFIX: &str = "/koodrive/ose/v1/task/";
pub const TASK_LIST_PATH: &str = "/koodrive/ose/v1/task/list";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /task/list`: validated, cached, normalized.
    TaskList,
    /// Any other method under `/task/`: a write; success invalidates that identity's lists.
    TaskWrite,
    /// `GET`/`HEAD` of another task resource (`/task/{id}`, `/task/result`, ...).
    TaskRead,
    /// Everything else: forwarded as it is.
    Other,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Route {
        let Some(rest) = path.strip_prefix(TASK_PREFIX) else {
            return Route::Other;
        };
        let read = method == Method::GET || method == Method::HEAD;
        match (read, rest) {
            (true, "list") if method == Method::GET => Route::TaskList,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_before_patterns() {
        let cases = [
            (Method::GET, "/koodrive/ose/v1/task/list", Route::TaskList),
            (Method::HEAD, "/koodrive/ose/v1/task/list", Route::TaskRead),
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
}
