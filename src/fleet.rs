//! Fleet mode: the Redis that every sidecar of a deployment shares. It holds the second cache
//! tier (pages signed with the fleet key), each user's generation and the fleet epoch (the
//! source of truth for invalidation), and short locks that make one sidecar fetch a page for
//! all. Bumps reach the other sidecars at once as Pub/Sub hints; a sidecar that loses its
//! subscription forgets what it learned and reads Redis again.
//!
//! Redis failing never fails a request: every call is bounded by `fleet.timeout`, and a few
//! failures in a row (or a failed heartbeat) make the sidecar fall back to its first tier alone
//! until a background reconnect succeeds ([`watch`]). This module deals in bytes and user ids;
//! the cache above it decides what the bytes are.

mod names;
mod pages;
mod scripts;
mod seal;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::config::fleet::FleetConfig;
use crate::metrics::Metrics;
use names::Names;
pub use names::{channel, cooldown_hint, user_tag, UserTag};
pub use pages::LockGuard;
use pages::{write_in_order, Write};
use seal::Sealer;

/// Failed calls in a row that make the sidecar fall back to first-tier only.
const FAILURES_TO_FALL_BACK: u32 = 3;

/// Queued background writes (page stores, lock releases) beyond which new ones are dropped.
const WRITE_QUEUE: usize = 1024;

/// Past this many learned generations, all are forgotten at once (and read again when needed).
const MAX_LEARNED: usize = 100_000;

/// Users whose write could not reach Redis, remembered so that the bump is made on resume;
/// past this many, the whole fleet epoch is bumped instead.
const MAX_PENDING: usize = 10_000;

/// The generation a key is built from in fleet mode: the fleet epoch and the user's counter.
pub type FleetGeneration = [u64; 2];

/// A generation as known without a Redis call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Known(FleetGeneration),
    /// Fleet mode is fallen back: the first tier's own generation applies.
    Down,
    /// Not learned yet: Redis must be asked.
    Ask,
}

/// Called when the first tier must drop what it holds: fleet mode resumed (what it stored while
/// fallen back cannot be proven current) or the whole fleet was purged.
pub type OnForget = Box<dyn Fn() + Send + Sync>;

pub struct Fleet {
    config: FleetConfig,
    names: Names,
    sealer: Sealer,
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    failures: AtomicU32,
    learned: RwLock<Learned>,
    pending: Mutex<Pending>,
    /// The Redis server last connected to, by its `run_id`.
    run_id: Mutex<Option<String>>,
    writes: mpsc::Sender<Write>,
    metrics: Arc<Metrics>,
    on_forget: OnForget,
    /// When a fleet-wide cooldown heard as a hint ends.
    cooldown_until: Mutex<Option<tokio::time::Instant>>,
}

#[derive(Default)]
struct Learned {
    epoch: Option<u64>,
    users: HashMap<UserTag, u64>,
}

#[derive(Default)]
struct Pending {
    users: HashSet<UserTag>,
    epoch: bool,
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet.key_file: cannot be read")]
    KeyFile(#[source] std::io::Error),
    #[error("fleet.key_file: the fleet key must hold at least {0} bytes")]
    KeyTooShort(usize),
}

impl Fleet {
    /// Reads the fleet key and starts the background connect and heartbeat; returns at once,
    /// fallen back until Redis answers.
    pub async fn start(
        config: FleetConfig,
        metrics: Arc<Metrics>,
        on_forget: OnForget,
    ) -> Result<Arc<Fleet>, FleetError> {
        let key = tokio::fs::read(&config.key_file)
            .await
            .map_err(FleetError::KeyFile)?;
        let min = crate::config::fleet::MIN_KEY_BYTES;
        if key.trim_ascii().len() < min {
            return Err(FleetError::KeyTooShort(min));
        }
        let sealer = Sealer::new(key.trim_ascii()).ok_or(FleetError::KeyTooShort(min))?;
        let (writes, queued) = mpsc::channel(WRITE_QUEUE);
        let fleet = Arc::new(Fleet {
            names: Names::new(&config.key_prefix),
            sealer,
            config,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            learned: RwLock::default(),
            pending: Mutex::default(),
            run_id: Mutex::default(),
            writes,
            metrics,
            on_forget,
            cooldown_until: Mutex::default(),
        });
        // Fallen back until the first connect: no request waits for Redis at start.
        fleet.metrics.fleet.breaker_open.set(1);
        tokio::spawn(write_in_order(Arc::downgrade(&fleet), queued));
        tokio::spawn(watch::run(Arc::downgrade(&fleet)));
        Ok(fleet)
    }

    /// Whether Redis is in use (not fallen back).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    pub fn heartbeat(&self) -> Duration {
        self.config.heartbeat
    }

    /// What is left of a fleet-wide cooldown another sidecar announced, if any.
    pub fn heard_cooldown(&self) -> Option<Duration> {
        let until = *self
            .cooldown_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.and_then(|until| until.checked_duration_since(tokio::time::Instant::now()))
    }

    /// A cooldown hint heard: extends, never shortens, the one known.
    fn heard_cooldown_of(&self, length: Duration) {
        let until = tokio::time::Instant::now() + length;
        let mut known = self
            .cooldown_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.map_or(true, |known| known < until) {
            *known = Some(until);
        }
    }

    /// The current connection, for other fleet-wide state (a shared rate budget): `None` while
    /// fallen back. Calls made with it should go through [`Fleet::call`].
    pub fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.conn.load_full().map(|conn| (*conn).clone())
    }

    /// The key prefix every fleet key starts with.
    pub fn key_prefix(&self) -> &str {
        self.names.prefix()
    }

    /// Runs one Redis call under `fleet.timeout` and the fallback breaker: `None` when fleet
    /// mode is down or the call failed (counted under `operation`).
    pub async fn call<T, F, Fut>(&self, operation: &'static str, call: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(self.config.timeout, call(conn)).await {
            Ok(Ok(value)) => {
                self.failures.store(0, Ordering::Relaxed);
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(operation, &format!("{:?}", error.kind()));
                None
            }
            Err(_) => {
                self.failed(operation, "timed out");
                None
            }
        }
    }

    fn failed(&self, operation: &'static str, why: &str) {
        self.metrics.fleet.error(operation);
        tracing::debug!(operation, why, "fleet: a Redis call failed");
        if self.failures.fetch_add(1, Ordering::AcqRel) + 1 >= FAILURES_TO_FALL_BACK {
            self.fall_back(why);
        }
    }

    /// Stops using Redis until the background reconnect succeeds; logged once per fallback.
    fn fall_back(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.fleet.up.set(0);
            self.metrics.fleet.breaker_open.set(1);
            self.metrics.fleet.fallbacks.inc();
            tracing::warn!(
                why,
                "fleet mode fallen back to first-tier only: Redis is unreachable or failing"
            );
        }
        self.forget();
    }

    /// Drops every generation learned: they are read from Redis again when next needed.
    fn forget(&self) {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        *learned = Learned::default();
    }

    /// What this sidecar knows of the user's generation without asking Redis: `Known` from
    /// what it learned, `Down` while fleet mode is fallen back, else `Ask` (see
    /// [`Fleet::generation`]).
    pub fn known_generation(&self, user: &UserTag) -> Known {
        if !self.is_up() {
            return Known::Down;
        }
        let learned = self.learned.read().unwrap_or_else(|p| p.into_inner());
        match (learned.epoch, learned.users.get(user)) {
            (Some(epoch), Some(&user_gen)) => Known::Known([epoch, user_gen]),
            _ => Known::Ask,
        }
    }

    /// The user's fleet generation (with the fleet epoch), from what this sidecar learned, or
    /// read from Redis (seeded from the clock when missing); `None` while fleet mode is down.
    pub async fn generation(&self, user: &UserTag) -> Option<FleetGeneration> {
        match self.known_generation(user) {
            Known::Known(generation) => return Some(generation),
            Known::Down => return None,
            Known::Ask => {}
        }
        let keys = [self.names.epoch(), self.names.generation(user)];
        let read: Vec<u64> = self
            .call("generation", |mut conn| async move {
                scripts::read_generations(&keys, clock_seed())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let (&epoch, &user_gen) = (read.first()?, read.get(1)?);
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        if learned.users.len() >= MAX_LEARNED {
            learned.users.clear();
        }
        // A bump heard while this read was out may be newer: keep the larger of the two.
        let epoch = learned.epoch.map_or(epoch, |known| known.max(epoch));
        learned.epoch = Some(epoch);
        let user_gen = *learned
            .users
            .entry(*user)
            .and_modify(|known| *known = (*known).max(user_gen))
            .or_insert(user_gen);
        Some([epoch, user_gen])
    }

    /// Bumps the user's generation fleet-wide and tells the other sidecars, before returning.
    /// When Redis cannot be reached, the bump is remembered and made on resume.
    pub async fn invalidate_user(&self, user: &UserTag) {
        let key = self.names.generation(user);
        if let Some(user_gen) = self.bump(key, names::user_hint(user), Some(*user)).await {
            self.learn_user(*user, user_gen);
        }
    }

    /// Bumps the fleet epoch: every page of every user, on every sidecar, becomes unreachable.
    pub async fn purge(&self) {
        let key = self.names.epoch();
        if let Some(epoch) = self.bump(key, names::EPOCH_HINT.to_owned(), None).await {
            self.learn_epoch(epoch);
        }
    }

    /// Bumps one counter (a user's, or the epoch for `None`) and publishes `hint` with its new
    /// number. A bump that cannot be made leaves the fleet's numbers behind a write (or purge)
    /// this sidecar answered: it is remembered, and even one failure falls back at once, so that
    /// this sidecar serves by its own counters (bumped already) and the bump is made when fleet
    /// mode resumes, with the first tier dropped. (Three failures in a row are the rule for
    /// other calls.)
    async fn bump(&self, key: String, hint: String, user: Option<UserTag>) -> Option<u64> {
        let channel = self.names.channel();
        let bumped: Option<u64> = self
            .call("invalidate", |mut conn| async move {
                scripts::bump(&key, clock_seed(), &channel, &hint)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
        match bumped {
            Some(_) => self.sent(if user.is_some() { "user" } else { "all" }),
            None => {
                self.remember_pending(user);
                self.fall_back("a generation bump failed");
            }
        }
        bumped
    }

    fn sent(&self, kind: &'static str) {
        self.metrics
            .fleet
            .invalidations_sent
            .get_or_create(&crate::metrics::fleet::KindLabels { kind })
            .inc();
    }

    fn remember_pending(&self, user: Option<UserTag>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match user {
            Some(user) if pending.users.len() < MAX_PENDING => {
                pending.users.insert(user);
            }
            _ => {
                pending.epoch = true;
                pending.users.clear();
            }
        }
    }

    fn learn_user(&self, user: UserTag, user_gen: u64) {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        if learned.users.len() >= MAX_LEARNED {
            learned.users.clear();
        }
        let known = learned.users.entry(user).or_insert(user_gen);
        *known = (*known).max(user_gen);
    }

    fn learn_epoch(&self, epoch: u64) {
        let mut learned = self.learned.write().unwrap_or_else(|p| p.into_inner());
        if learned.epoch.is_some_and(|known| known >= epoch) {
            return;
        }
        learned.epoch = Some(epoch);
        drop(learned);
        (self.on_forget)();
    }
}

/// A generation for a counter Redis does not hold (new, flushed, or lost in a restart or a
/// failover): the clock in microseconds, above any number an earlier counter reached.
fn clock_seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_micros()).unwrap_or(u64::MAX)
}
