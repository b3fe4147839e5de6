//! The task endpoints. Literal paths are matched before the `/task/{task_id}` pattern.

use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::list;
use super::reply::{codes, ApiError};
use super::store::{NewTask, Store};
use super::tasks::{Status, Task};

const PREFIX: &str = "/koodrive/ose/v1/task/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Create,
    Result,
    Get(String),
    /// `GET /task/dstUserInfo/{src_user_id}`: where a transfer from that user would go.
    DstUserInfo(String),
}

/// The route for a method and path, or `None` for KooDrive's 404.
pub fn route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(PREFIX)?;
    match (method, rest) {
        (&Method::GET, "list") => Some(Route::List),
        (&Method::POST, "create") => Some(Route::Create),
        (&Method::GET, "result") => Some(Route::Result),
        (_, "list" | "create" | "result") => None,
        (&Method::GET, rest) if rest.starts_with("dstUserInfo/") => {
            let src = &rest["dstUserInfo/".len()..];
            (!src.is_empty() && !src.contains('/')).then(|| Route::DstUserInfo(src.to_string()))
        }
        (&Method::GET, id) if !id.is_empty() && !id.contains('/') => {
            Some(Route::Get(id.to_string()))
        }
        _ => None,
    }
}

/// The fields of a successful answer (`code` and `msg` are added by the caller).
pub fn dispatch(
    route: &Route,
    store: &Store,
    user_id: &str,
    query: Option<&str>,
    body: &[u8],
    now_ms: i64,
) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    match route {
        Route::List => {
            let query = list::parse_query(query)?;
            let (dtos, next) = store.with_tasks(user_id, |tasks| {
                let (items, next) = list::page(tasks, &query, now_ms);
                let dtos: Vec<Value> = items.iter().map(|t| to_value(t, now_ms)).collect();
                (dtos, next)
            });
            out.insert("taskListDtos".into(), Value::Array(dtos));
            if let Some(next) = next {
                out.insert("nextCursor".into(), next.into());
            }
        }
        Route::Create => {
            let task = store.create(user_id, parse_create(body)?, now_ms)?;
            out.insert("taskId".into(), task.id.to_string().into());
        }
        Route::Get(id) => {
            let task = find(store, user_id, id)?;
            out.insert("taskDto".into(), to_value(&task, now_ms));
        }
        Route::DstUserInfo(src) => {
            // The docs name the endpoint, not its fields: the mock answers who would receive a
            // transfer from `src` (the caller) in KooDrive's id form.
            out.insert("srcUserId".into(), src.clone().into());
            out.insert("dstUserId".into(), user_id.into());
        }
        Route::Result => {
            let id = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == "taskId")
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::bad_request(codes::BAD_PARAMETER, "taskId is required"))?;
            let task = find(store, user_id, &id)?;
            out.insert("taskResult".into(), result(&task, now_ms));
        }
    }
    Ok(out)
}

fn find(store: &Store, user_id: &str, id: &str) -> Result<Task, ApiError> {
    let shown: String = id.chars().take(40).collect();
    let parsed = id
        .parse::<u64>()
        .ok()
        .filter(|_| id.len() == 19)
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_PARAMETER,
                format!("taskId must be a 19-digit number, got '{shown}'"),
            )
        })?;
    store.find(user_id, parsed).ok_or_else(|| {
        ApiError::bad_request(
            codes::TASK_NOT_FOUND,
            format!("task {shown} does not exist for this user"),
        )
    })
}

fn to_value(task: &Task, now_ms: i64) -> Value {
    serde_json::to_value(task.view(now_ms)).unwrap_or(Value::Null)
}

fn result(task: &Task, now_ms: i64) -> Value {
    let view = task.view(now_ms);
    let mut out = Map::new();
    out.insert("taskId".into(), view.task_id.into());
    out.insert("status".into(), view.status.into());
    let message = match task.status(now_ms) {
        Status::New => "task is waiting to start",
        Status::Executing => "task is executing",
        Status::Success => "task finished successfully",
        Status::Failed => task.failure().1,
    };
    if let Some(code) = view.result_code {
        out.insert("resultCode".into(), code.into());
    }
    out.insert("resultMsg".into(), message.into());
    if let Some(end) = view.end_time {
        out.insert("endTime".into(), end.into());
    }
    Value::Object(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    task_name: String,
    #[serde(default)]
    task_type: i64,
    init_params: Option<Value>,
    locale: Option<String>,
}

/// Validates a `POST /task/create` body.
pub fn parse_create(body: &[u8]) -> Result<NewTask, ApiError> {
    let bad = |msg: String| ApiError::bad_request(codes::BAD_BODY, msg);
    let parsed: CreateBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid request body: {e}")))?;
    let name = parsed.task_name.trim();
    if name.is_empty() || name.chars().count() > 256 {
        return Err(bad("taskName must be 1 to 256 characters".into()));
    }
    if !(0..=i64::from(i32::MAX)).contains(&parsed.task_type) {
        return Err(bad("taskType must be a non-negative integer".into()));
    }
    let init_params = match parsed.init_params {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    Ok(NewTask {
        name: name.to_string(),
        task_type: parsed.task_type,
        init_params,
        locale: parsed.locale.filter(|l| !l.is_empty() && l.len() <= 16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_win_over_the_task_id_pattern() {
        let get = |p: &str| route(&Method::GET, p);
        assert_eq!(get("/koodrive/ose/v1/task/list"), Some(Route::List));
        assert_eq!(get("/koodrive/ose/v1/task/result"), Some(Route::Result));
        assert_eq!(
            get("/koodrive/ose/v1/task/1486254586942472064"),
            Some(Route::Get("1486254586942472064".into()))
        );
        assert_eq!(
            route(&Method::POST, "/koodrive/ose/v1/task/create"),
            Some(Route::Create)
        );
        assert_eq!(get("/koodrive/ose/v1/task/create"), None);
        assert_eq!(route(&Method::POST, "/koodrive/ose/v1/task/list"), None);
        assert_eq!(get("/koodrive/ose/v1/task/"), None);
        assert_eq!(get("/koodrive/ose/v1/task/1/2"), None);
        assert_eq!(get("/koodrive/ose/v1/files"), None);
        assert_eq!(get("/"), None);
    }

    #[test]
    fn create_body_is_validated() {
        let ok = parse_create(br#"{"taskName":" t1 ","taskType":0,"initParams":{"a":1}}"#);
        assert_eq!(
            ok.map(|t| (t.name, t.init_params)),
            Ok(("t1".to_string(), Some(r#"{"a":1}"#.to_string())))
        );
        for bad in [
            &b""[..],
            b"[]",
            b"{\"taskType\":0}",
            b"{\"taskName\":\"\"}",
            b"{\"taskName\":\"x\",\"taskType\":-1}",
            b"{\"taskName\":\"x\",\"taskType\":\"0\"}",
            b"{\"taskName\":\"x\",\"taskType\":1e99}",
        ] {
            let err = parse_create(bad).err();
            assert_eq!(err.map(|e| e.code), Some(codes::BAD_BODY), "{bad:?}");
        }
    }
}
