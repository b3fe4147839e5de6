//! `GET /task/list`: query parsing and cursor paging, as pure functions.
//!
//! The cursor is the `createTime` (epoch milliseconds) of the first task of the next page, like
//! KooDrive's `1723549107000`. A user's tasks have distinct creation times, so paging by time
//! neither skips nor repeats a task, even when tasks are created between pages.

use super::reply::{codes, ApiError};
use super::tasks::{Status, Task};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub task_type: Option<i64>,
    /// Empty means every status.
    pub statuses: Vec<Status>,
    pub page_size: usize,
    /// `None` for the first page.
    pub cursor: Option<i64>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            task_type: None,
            statuses: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            cursor: None,
        }
    }
}

/// Parses the raw query. Empty values mean "absent" (KooDrive's own example sends `pageCursor=`);
/// `status` may repeat and may hold a comma-separated list; unknown names are ignored.
pub fn parse_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut out = ListQuery::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match name.as_ref() {
            "taskType" => match value.parse::<i64>() {
                Ok(t) if (0..=i64::from(i32::MAX)).contains(&t) => out.task_type = Some(t),
                _ => return Err(bad_param("taskType must be a non-negative integer", value)),
            },
            "status" => {
                for part in value.split(',') {
                    let status = part.trim().parse::<i64>().ok().and_then(Status::from_code);
                    match status {
                        Some(s) if !out.statuses.contains(&s) => out.statuses.push(s),
                        Some(_) => {}
                        None => return Err(bad_param("status must be 0, 1, 2 or 3", value)),
                    }
                }
            }
            "pageSize" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => out.page_size = n,
                _ => {
                    return Err(bad_param(
                        "pageSize must be an integer from 1 to 100",
                        value,
                    ))
                }
            },
            "pageCursor" => match value.parse::<i64>() {
                Ok(c) if c >= 0 => out.cursor = Some(c),
                _ => {
                    return Err(bad_param(
                        "pageCursor must be the nextCursor of a previous page",
                        value,
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(out)
}

fn bad_param(what: &str, value: &str) -> ApiError {
    let shown: String = value.chars().take(40).collect();
    ApiError::bad_request(codes::BAD_PARAMETER, format!("{what}, got '{shown}'"))
}

/// One page of `tasks` (newest first) at `now_ms`, and the cursor of the next page if any.
pub fn page<'a>(
    tasks: impl IntoIterator<Item = &'a Task>,
    query: &ListQuery,
    now_ms: i64,
) -> (Vec<&'a Task>, Option<i64>) {
    let mut matching = tasks.into_iter().filter(|t| {
        query.cursor.map_or(true, |c| t.create_ms <= c)
            && query.task_type.map_or(true, |ty| t.task_type == ty)
            && (query.statuses.is_empty() || query.statuses.contains(&t.status(now_ms)))
    });
    let items: Vec<&Task> = matching.by_ref().take(query.page_size).collect();
    let next = matching.next().map(|t| t.create_ms);
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::super::tasks::history;
    use super::*;

    fn err_code(query: &str) -> Option<u32> {
        parse_query(Some(query)).err().map(|e| e.code)
    }

    #[test]
    fn parses_documented_example_and_defaults() {
        assert_eq!(parse_query(None), Ok(ListQuery::default()));
        assert_eq!(
            parse_query(Some("taskType=0&status=2&pageSize=10&pageCursor")),
            Ok(ListQuery {
                task_type: Some(0),
                statuses: vec![Status::Success],
                page_size: 10,
                cursor: None,
            })
        );
        let q = parse_query(Some("status=1&status=2,3&pageCursor=1723549107000&x=y"));
        assert_eq!(
            q.map(|q| (q.statuses, q.cursor)),
            Ok((
                vec![Status::Executing, Status::Success, Status::Failed],
                Some(1_723_549_107_000)
            ))
        );
    }

    #[test]
    fn rejects_bad_values_with_400() {
        for bad in [
            "taskType=x",
            "taskType=-1",
            "status=4",
            "status=1,,2",
            "status=one",
            "pageSize=0",
            "pageSize=101",
            "pageSize=1.5",
            "pageCursor=-3",
            "pageCursor=abc",
            "pageCursor=99999999999999999999999",
        ] {
            assert_eq!(err_code(bad), Some(codes::BAD_PARAMETER), "{bad}");
        }
        let err = parse_query(Some("pageSize=500")).err();
        assert!(err.is_some_and(|e| e.status == 400 && e.msg.contains("'500'")));
    }

    #[test]
    fn cursor_pages_cover_everything_once() {
        let anchor = 1_723_447_353_000;
        let tasks = history("pager", anchor);
        let mut query = ListQuery {
            page_size: 7,
            ..ListQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let (items, next) = page(&tasks, &query, anchor);
            seen.extend(items.iter().map(|t| t.id));
            match next {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, tasks.iter().map(|t| t.id).collect::<Vec<_>>());
    }

    #[test]
    fn filters_apply_before_paging_and_last_page_has_no_cursor() {
        let anchor = 1_723_447_353_000;
        let tasks = history("filters", anchor);
        let failed = ListQuery {
            statuses: vec![Status::Failed],
            ..ListQuery::default()
        };
        let (items, next) = page(&tasks, &failed, anchor);
        assert!(next.is_none());
        assert_eq!(items.len(), tasks.iter().filter(|t| t.fails()).count());
        let (new, _) = page(
            &tasks,
            &ListQuery {
                statuses: vec![Status::New],
                ..failed
            },
            anchor,
        );
        assert_eq!(new.len(), 1);
        let type1 = ListQuery {
            task_type: Some(1),
            page_size: 100,
            ..ListQuery::default()
        };
        let (items, _) = page(&tasks, &type1, anchor);
        assert!(!items.is_empty() && items.iter().all(|t| t.task_type == 1));
        let past_end = ListQuery {
            cursor: Some(0),
            ..ListQuery::default()
        };
        assert_eq!(page(&tasks, &past_end, anchor), (Vec::new(), None));
    }
}
