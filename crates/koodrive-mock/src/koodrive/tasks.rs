//! The task model: deterministic per-user history, live status from age, and the wire view.

use serde::Serialize;
use time::OffsetDateTime;

/// How many historical tasks every user has.
pub const HISTORY_LEN: usize = 300;
/// A task is NEW for this long after creation...
pub const NEW_FOR_MS: i64 = 5_000;
/// ...and EXECUTING until this age, then SUCCESS or FAILED.
pub const FINISHED_AFTER_MS: i64 = 20_000;

/// Snowflake-style ids: milliseconds since this epoch (2013-06-01) shifted left 22 bits, which
/// gives 19-digit ids for any time after 2021, like KooDrive's `1486254586942472064`.
const ID_EPOCH_MS: i64 = 1_370_044_800_000;
/// Historical ids are computed from this fixed instant (2024-09-09) so they never change.
const HISTORY_ID_BASE_MS: i64 = 1_725_840_000_000;

const NAMES: &[&str] = &[
    "photo transfer",
    "album migration",
    "documents handover",
    "ceshi",
    "video archive transfer",
    "family share move",
];
const LOCALES: &[&str] = &["SG", "CN", "MY", "AE", "DE"];
/// Failure result codes (18xxxxxx) and what they mean.
pub const FAILURES: &[(&str, &str)] = &[
    ("18010001", "source file not found"),
    ("18010002", "target user storage quota exceeded"),
    ("18020003", "transfer interrupted, retry limit reached"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    New = 0,
    Executing = 1,
    Success = 2,
    Failed = 3,
}

impl Status {
    pub fn from_code(code: i64) -> Option<Status> {
        match code {
            0 => Some(Status::New),
            1 => Some(Status::Executing),
            2 => Some(Status::Success),
            3 => Some(Status::Failed),
            _ => None,
        }
    }
}

/// The status a task has `age_ms` after its creation; a clock running backwards reads as NEW.
pub fn status_at(age_ms: i64, fails: bool) -> Status {
    if age_ms < NEW_FOR_MS {
        Status::New
    } else if age_ms < FINISHED_AFTER_MS {
        Status::Executing
    } else if fails {
        Status::Failed
    } else {
        Status::Success
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    pub name: String,
    pub task_type: i64,
    pub user_id: String,
    pub tenant_id: String,
    pub locale: String,
    pub init_params: Option<String>,
    pub create_ms: i64,
}

impl Task {
    /// About one task in ten fails, decided by its id.
    pub fn fails(&self) -> bool {
        mix(self.id) % 10 == 0
    }

    pub fn status(&self, now_ms: i64) -> Status {
        status_at(now_ms.saturating_sub(self.create_ms), self.fails())
    }

    /// The failure's result code and message, meaningful once the task has FAILED.
    pub fn failure(&self) -> (&'static str, &'static str) {
        FAILURES[(mix(self.id ^ 0x5bd1) % FAILURES.len() as u64) as usize]
    }

    /// The task as KooDrive sends it (`TaskInfo`), at `now_ms`.
    pub fn view(&self, now_ms: i64) -> TaskDto {
        let status = self.status(now_ms);
        let started = status >= Status::Executing;
        let finished = status >= Status::Success;
        TaskDto {
            task_id: self.id.to_string(),
            task_name: self.name.clone(),
            task_type: self.task_type,
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            status: status as i64,
            init_params: self.init_params.clone(),
            locale: self.locale.clone(),
            result_code: match status {
                Status::Success => Some("0".into()),
                Status::Failed => Some(self.failure().0.into()),
                _ => None,
            },
            create_time: format_time(self.create_ms),
            start_time: started.then(|| format_time(self.create_ms + NEW_FOR_MS)),
            end_time: finished.then(|| format_time(self.create_ms + FINISHED_AFTER_MS)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDto {
    pub task_id: String,
    pub task_name: String,
    pub task_type: i64,
    pub tenant_id: String,
    pub user_id: String,
    pub status: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_params: Option<String>,
    pub locale: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    pub create_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// A user's historical tasks, newest first, created before `anchor_ms` (the mock's start).
///
/// Everything but the times depends on the user id alone; the two newest tasks are only
/// seconds old at the anchor, so a fresh mock shows a NEW and an EXECUTING task that finish live.
pub fn history(user_id: &str, anchor_ms: i64) -> Vec<Task> {
    let seed = fnv1a(user_id.as_bytes());
    let mut rng = fastrand::Rng::with_seed(seed);
    let tenant_id = snowflake(HISTORY_ID_BASE_MS - 400 * 86_400_000, seed & 0x3f_ffff);
    let locale = LOCALES[rng.usize(..LOCALES.len())];
    let mut age_ms: i64 = 2_000 + rng.i64(0..2_000);
    let mut tasks = Vec::with_capacity(HISTORY_LEN);
    for i in 0..HISTORY_LEN {
        let task_type = if rng.u8(..5) == 0 { 1 } else { 0 };
        let id = snowflake(HISTORY_ID_BASE_MS - age_ms, rng.u64(..1 << 22));
        let init_params = (task_type == 0).then(|| {
            let dst = snowflake(HISTORY_ID_BASE_MS - 500 * 86_400_000, rng.u64(..1 << 22));
            format!(r#"{{"dstUserId":"{dst}"}}"#)
        });
        tasks.push(Task {
            id,
            name: format!("{} {}", NAMES[rng.usize(..NAMES.len())], HISTORY_LEN - i),
            task_type,
            user_id: user_id.to_string(),
            tenant_id: tenant_id.to_string(),
            locale: locale.to_string(),
            init_params,
            create_ms: anchor_ms - age_ms,
        });
        // The second task is still executing at the anchor; the rest are spread over weeks.
        age_ms += if i == 0 {
            6_000 + rng.i64(0..4_000)
        } else {
            60_000 + rng.i64(0..6 * 3_600_000)
        };
    }
    tasks
}

/// A 19-digit snowflake-style id for a time in epoch milliseconds.
pub fn snowflake(ms: i64, low_bits: u64) -> u64 {
    let since = u64::try_from(ms.saturating_sub(ID_EPOCH_MS)).unwrap_or(0);
    (since << 22) | (low_bits & 0x3f_ffff)
}

/// `2024-08-12T07:22:33.000Z`.
pub fn format_time(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// FNV-1a: a seed that stays the same across Rust releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads an id's bits before taking it modulo something small.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ANCHOR: i64 = 1_723_447_353_000; // 2024-08-12T07:22:33Z

    #[test]
    fn status_follows_age() {
        let table = [
            (-1_000, false, Status::New),
            (0, false, Status::New),
            (4_999, true, Status::New),
            (5_000, true, Status::Executing),
            (19_999, false, Status::Executing),
            (20_000, false, Status::Success),
            (20_000, true, Status::Failed),
            (86_400_000, false, Status::Success),
        ];
        for (age, fails, want) in table {
            assert_eq!(status_at(age, fails), want, "age {age} fails {fails}");
        }
    }

    #[test]
    fn history_is_deterministic_per_user_and_newest_first() {
        let a = history("1505084218764547200", ANCHOR);
        assert_eq!(a, history("1505084218764547200", ANCHOR));
        assert_eq!(a.len(), HISTORY_LEN);
        let ids: HashSet<u64> = a.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), HISTORY_LEN);
        assert!(a.iter().all(|t| t.id.to_string().len() == 19));
        assert!(a
            .windows(2)
            .all(|w| w[0].create_ms > w[1].create_ms && w[0].id > w[1].id));
        let b = history("42", ANCHOR);
        assert_ne!(a[0].id, b[0].id);
        // Ids do not depend on when the mock started.
        let later: Vec<u64> = history("42", ANCHOR + 999_999)
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(later, b.iter().map(|t| t.id).collect::<Vec<_>>());
    }

    #[test]
    fn history_is_mostly_finished_with_a_few_live_tasks() {
        let tasks = history("user-7", ANCHOR);
        assert_eq!(tasks[0].status(ANCHOR), Status::New);
        assert_eq!(tasks[1].status(ANCHOR), Status::Executing);
        assert!(tasks[2..]
            .iter()
            .all(|t| t.status(ANCHOR) >= Status::Success));
        let failed = tasks.iter().filter(|t| t.fails()).count();
        assert!((10..=60).contains(&failed), "{failed} failures");
        assert!(tasks.iter().any(|t| t.task_type == 1));
        assert!(tasks
            .iter()
            .all(|t| t.status(ANCHOR + 60_000) >= Status::Success));
    }

    #[test]
    fn view_has_times_and_result_code_only_when_meaningful() {
        let task = &history("u", ANCHOR)[5];
        let fresh = task.view(task.create_ms + 1);
        assert_eq!(fresh.status, 0);
        assert!(fresh.start_time.is_none() && fresh.end_time.is_none());
        assert!(fresh.result_code.is_none());
        let running = task.view(task.create_ms + 6_000);
        assert_eq!(running.status, 1);
        assert!(running.start_time.is_some() && running.end_time.is_none());
        let done = task.view(task.create_ms + 30_000);
        assert!(done.end_time.is_some());
        let code = done.result_code.unwrap_or_default();
        assert!(code == "0" || (code.starts_with("18") && code.len() == 8));
    }

    #[test]
    fn times_use_koodrive_format() {
        assert_eq!(format_time(ANCHOR), "2024-08-12T07:22:33.000Z");
        assert_eq!(format_time(ANCHOR + 7), "2024-08-12T07:22:33.007Z");
    }
}
