//! Per-user task lists: the generated history plus the tasks created since the mock started.

use std::collections::HashMap;
use std::sync::Mutex;

use super::reply::{codes, ApiError};
use super::tasks::{history, snowflake, Task};

/// Bounds the memory a long-running demo can be made to use.
const MAX_CREATED: usize = 100_000;

/// Users whose generated history is kept (about 100 KB each); others get theirs generated per call.
const MAX_KEPT_HISTORIES: usize = 256;

/// What `POST /task/create` asks for, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub name: String,
    pub task_type: i64,
    pub init_params: Option<String>,
    pub locale: Option<String>,
}

#[derive(Debug)]
pub struct Store {
    /// History is generated relative to this instant (the mock's start), in epoch milliseconds.
    anchor_ms: i64,
    created: Mutex<Created>,
}

#[derive(Debug, Default)]
struct Created {
    /// Oldest first, per user id.
    by_user: HashMap<String, Vec<Task>>,
    total: usize,
    /// Generated histories, kept so that a list call does not rebuild one (a busy mock's main cost).
    histories: HashMap<String, Vec<Task>>,
}

impl Store {
    pub fn new(anchor_ms: i64) -> Store {
        Store {
            anchor_ms,
            created: Mutex::new(Created::default()),
        }
    }

    /// All of a user's tasks, newest first.
    pub fn list(&self, user_id: &str) -> Vec<Task> {
        self.with_tasks(user_id, |tasks| tasks.cloned().collect())
    }

    /// Runs `f` over a user's tasks, newest first, without copying them.
    pub fn with_tasks<R>(
        &self,
        user_id: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &Task>) -> R,
    ) -> R {
        let mut created = self.lock();
        let generated;
        let history = match created.histories.contains_key(user_id) {
            true => None,
            false if created.histories.len() < MAX_KEPT_HISTORIES => {
                let history = history(user_id, self.anchor_ms);
                created.histories.insert(user_id.to_string(), history);
                None
            }
            false => {
                generated = history(user_id, self.anchor_ms);
                Some(&generated)
            }
        };
        let history = history
            .or_else(|| created.histories.get(user_id))
            .map_or(&[][..], Vec::as_slice);
        let mine = created.by_user.get(user_id).map_or(&[][..], Vec::as_slice);
        f(&mut mine.iter().rev().chain(history))
    }

    pub fn find(&self, user_id: &str, task_id: u64) -> Option<Task> {
        self.with_tasks(user_id, |mut tasks| {
            Iterator::find(&mut tasks, |t| t.id == task_id).cloned()
        })
    }

    /// Creates a task at `now_ms`; it is the user's newest task from then on.
    pub fn create(&self, user_id: &str, new: NewTask, now_ms: i64) -> Result<Task, ApiError> {
        let newest = self.newest_history(user_id);
        let mut created = self.lock();
        if created.total >= MAX_CREATED {
            return Err(ApiError::bad_request(
                codes::TASK_LIMIT,
                "the demo holds at most 100000 created tasks; restart it",
            ));
        }
        let list = created.by_user.entry(user_id.to_string()).or_default();
        let latest_ms = list.last().or(newest.as_ref()).map_or(0, |t| t.create_ms);
        // Creation times are unique per user: that is what makes the time cursor exact.
        let create_ms = now_ms.max(latest_ms.saturating_add(1));
        let task = Task {
            id: snowflake(create_ms, fastrand::u64(..)),
            name: new.name,
            task_type: new.task_type,
            user_id: user_id.to_string(),
            tenant_id: newest
                .as_ref()
                .map(|t| t.tenant_id.clone())
                .unwrap_or_default(),
            locale: new
                .locale
                .or_else(|| newest.map(|t| t.locale))
                .unwrap_or_default(),
            init_params: new.init_params,
            create_ms,
        };
        list.push(task.clone());
        created.total += 1;
        Ok(task)
    }

    /// The user's newest generated task (kept histories first).
    fn newest_history(&self, user_id: &str) -> Option<Task> {
        if let Some(history) = self.lock().histories.get(user_id) {
            return history.first().cloned();
        }
        history(user_id, self.anchor_ms).into_iter().next()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Created> {
        // Nothing panics while holding the lock, but a poisoned map is still consistent.
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tasks::{Status, HISTORY_LEN};
    use super::*;

    #[test]
    fn created_tasks_come_first_and_start_new() {
        let anchor = 1_723_447_353_000;
        let store = Store::new(anchor);
        let new = NewTask {
            name: "t1".into(),
            task_type: 0,
            init_params: None,
            locale: None,
        };
        let a = store.create("u", new.clone(), anchor + 10).ok();
        let b = store.create("u", new, anchor + 10).ok();
        let list = store.list("u");
        assert_eq!(list.len(), HISTORY_LEN + 2);
        assert_eq!(Some(&list[0]), b.as_ref());
        assert_eq!(Some(&list[1]), a.as_ref());
        assert!(list[0].create_ms > list[1].create_ms);
        assert_eq!(list[0].status(anchor + 11), Status::New);
        assert_eq!(list[0].id.to_string().len(), 19);
        assert_eq!(
            store.find("u", list[0].id).map(|t| t.name),
            Some("t1".into())
        );
        assert_eq!(store.list("other").len(), HISTORY_LEN);
    }
}
