//! The task-list cache: moka bounded by bytes, keys that bind a page to the identity that asked,
//! per-user generations for constant-time invalidation, and flights that collapse concurrent
//! misses for one key into one upstream request.

pub mod outcome;
pub mod page;
pub mod policy;
pub mod query;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::ops::compute::{CompResult, Op};
use tokio::time::Instant;

use http::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::Identity;
use crate::config::CacheConfig;
use crate::error::GatewayError;
pub use outcome::{CacheOutcome, PassReason};
pub use page::{Entry, Page};
pub use query::TaskListQuery;

/// A SHA-256 over identity, generation and canonical query: fixed size, no secret in clear.
pub type Key = [u8; 32];

/// What one upstream exchange gave, and whether it was stored: shared by the request that led
/// the flight and every waiter.
pub type FlightResult = Result<Arc<Fetched>, Arc<GatewayError>>;

#[derive(Debug)]
pub struct Fetched {
    pub page: Page,
    pub stored: bool,
}

/// How many too-large pages are remembered at once.
const MAX_PASSES: u64 = 10_000;

/// Past this many users with a generation, all generations are reset at once (a full
/// invalidation), so that the table stays bounded.
const MAX_TRACKED_USERS: usize = 100_000;

#[derive(Debug, Default)]
struct Generations {
    /// The generation of every user not in `by_user`.
    floor: u64,
    last: u64,
    /// By a hash of the user id, not the id: an id may be as long as a head allows, and a
    /// `HeaderValue` parsed by hyper holds the whole buffer its head came in. Two ids that hash
    /// alike share a generation: a write by either invalidates both, never neither.
    /// (The hash is SipHash with this process's random keys: the map need not hash it again.)
    by_user: HashMap<u64, u64, KeyHash>,
    user_hasher: std::hash::RandomState,
}

impl Generations {
    fn user(&self, user_id: &HeaderValue) -> u64 {
        std::hash::BuildHasher::hash_one(&self.user_hasher, user_id.as_bytes())
    }
}

/// Hashes a [`Key`] by its first eight bytes (a `u64` by itself): it is already a SHA-256, so
/// rehashing it (moka's default is SipHash) would only cost time.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The key arrives as its length, then its 32 bytes: keep the digest's first word.
        if let Some(word) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyHash = std::hash::BuildHasherDefault<DigestHasher>;

pub struct TaskListCache {
    /// moka's sync cache: nothing here waits on I/O, and its future cache made every hit build and
    /// poll a future for the lookup (about 540 instructions of 26,600). A lookup never blocks
    /// (moka drops read records rather than wait); an insert may sleep 50 us when moka's write log
    /// is full while another worker runs its housekeeping, and inserts come only as fast as
    /// KooDrive answers misses.
    entries: moka::sync::Cache<Key, Entry, KeyHash>,
    /// Keys whose page was too large to share ("hit-for-pass", as Varnish calls it): requests for
    /// them stream from KooDrive directly, without a flight that would only learn it again.
    passes: moka::sync::Cache<Key, (), KeyHash>,
    generations: RwLock<Generations>,
    flights: Mutex<HashMap<Key, watch::Receiver<Option<FlightResult>>>>,
    /// TTL, stale windows and entry limit: replaced whole on reload.
    config: ArcSwap<CacheConfig>,
    /// How long new entries are kept (ttl plus the longer stale window), in milliseconds.
    retention_ms: Arc<AtomicU64>,
}

/// Expires each entry after the retention in force when it was stored, so that a reload that
/// changes the windows applies without rebuilding the cache.
struct Retention(Arc<AtomicU64>);

impl<V> moka::Expiry<Key, V> for Retention {
    fn expire_after_create(&self, _: &Key, _: &V, _: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_millis(self.0.load(Ordering::Relaxed)))
    }

    /// A page stored over another is kept as long as a new one (moka would keep the old
    /// deadline, and a page refreshed every ttl would vanish at its first one's end).
    fn expire_after_update(
        &self,
        _: &Key,
        _: &V,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(self.0.load(Ordering::Relaxed)))
    }
}

fn retention_ms(config: &CacheConfig) -> u64 {
    u64::try_from(policy::retention(config).as_millis()).unwrap_or(u64::MAX)
}

/// Whether a request led its flight or joined one already in the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Collapsed,
}

impl TaskListCache {
    pub fn new(config: &CacheConfig) -> TaskListCache {
        let retention = Arc::new(AtomicU64::new(retention_ms(config)));
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &Key, entry: &Entry| entry.weight())
            .expire_after(Retention(Arc::clone(&retention)))
            .build_with_hasher(KeyHash::default());
        let passes = moka::sync::Cache::builder()
            .max_capacity(MAX_PASSES)
            .expire_after(Retention(Arc::clone(&retention)))
            .build_with_hasher(KeyHash::default());
        TaskListCache {
            entries,
            passes,
            generations: RwLock::default(),
            flights: Mutex::default(),
            config: ArcSwap::from_pointee(config.clone()),
            retention_ms: retention,
        }
    }

    pub fn config(&self) -> arc_swap::Guard<Arc<CacheConfig>> {
        self.config.load()
    }

    /// Applies reloaded TTL and stale windows (the byte bound needs a restart).
    pub fn set_config(&self, config: &CacheConfig) {
        self.retention_ms
            .store(retention_ms(config), Ordering::Relaxed);
        self.config.store(Arc::new(config.clone()));
    }

    pub fn key(&self, identity: &Identity, query: &TaskListQuery) -> Key {
        let generation = self.generation(&identity.user_id);
        let mut hash = Sha256::new();
        for part in [identity.user_id.as_bytes(), identity.language.as_bytes()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.update(identity.credential_sha256);
        hash.update(generation.to_be_bytes());
        hash.update(query.canonical().as_bytes());
        hash.finalize().into()
    }

    fn generation(&self, user_id: &HeaderValue) -> u64 {
        let generations = self.generations.read().unwrap_or_else(|p| p.into_inner());
        // Until a first write, nobody has a generation of their own: no need to hash the id.
        if generations.by_user.is_empty() {
            return generations.floor;
        }
        generations
            .by_user
            .get(&generations.user(user_id))
            .copied()
            .unwrap_or(generations.floor)
    }

    /// Makes every cached page of this user unreachable at once (its entries age out).
    pub fn invalidate_user(&self, user_id: &HeaderValue) {
        let mut generations = self.generations.write().unwrap_or_else(|p| p.into_inner());
        generations.last += 1;
        let next = generations.last;
        if generations.by_user.len() >= MAX_TRACKED_USERS {
            generations.floor = next;
            generations.by_user.clear();
        }
        let user = generations.user(user_id);
        generations.by_user.insert(user, next);
    }

    /// Drops every entry.
    pub fn purge_all(&self) {
        let mut generations = self.generations.write().unwrap_or_else(|p| p.into_inner());
        generations.last += 1;
        generations.floor = generations.last;
        generations.by_user.clear();
        self.entries.invalidate_all();
        self.passes.invalidate_all();
    }

    pub fn get(&self, key: &Key) -> Option<Entry> {
        self.entries.get(key)
    }

    /// Whether this key's page was recently too large to share: fetch and stream it directly.
    pub fn is_pass(&self, key: &Key) -> bool {
        self.passes.contains_key(key)
    }

    /// Stores the page, fetched by a request sent at `requested_at`, when policy allows and no
    /// page fetched later is stored already (a slow fetch must not put an older page back over a
    /// newer one); says whether it did. Its age counts from `requested_at`, as RFC 9111 section
    /// 4.2.3 counts the time KooDrive took.
    pub fn store_if_allowed(&self, key: Key, page: &Page, requested_at: Instant) -> bool {
        if !policy::storable(page, self.config.load().max_entry_bytes) {
            return false;
        }
        let Some(entry) = Entry::new(page, requested_at) else {
            return false;
        };
        let outcome = self
            .entries
            .entry(key)
            .and_compute_with(|stored| match stored {
                Some(stored) if stored.value().requested_at() > requested_at => Op::Nop,
                _ => Op::Put(entry),
            });
        !matches!(outcome, CompResult::Unchanged(_) | CompResult::StillNone(_))
    }

    /// Runs moka's pending maintenance, where it counts entries and bytes: before reading
    /// [`Self::entry_count`] and [`Self::weighted_size`], or a scrape right after a store or a
    /// purge reads the old figures. (Called per scrape, never per request.)
    pub fn settle(&self) {
        self.entries.run_pending_tasks();
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Runs `fetch` once for all concurrent callers with the same key: joins the flight for
    /// `key` in the air, or starts one. The fetch runs in its own task, so a leader whose client
    /// goes away does not fail its waiters; it stores a storable page before anyone is answered.
    /// [`Flight::wait`] then waits for its answer.
    pub fn collapse<F>(self: &Arc<Self>, key: Key, fetch: F) -> (Flight, Role)
    where
        F: Future<Output = Result<Page, GatewayError>> + Send + 'static,
    {
        let (receiver, role) = self.join_or_lead(key, fetch);
        (Flight(receiver), role)
    }

    /// Starts a flight for `key` unless one is in the air; returns without waiting.
    pub fn refresh_in_background<F>(self: &Arc<Self>, key: Key, fetch: F)
    where
        F: Future<Output = Result<Page, GatewayError>> + Send + 'static,
    {
        drop(self.join_or_lead(key, fetch));
    }

    fn join_or_lead<F>(
        self: &Arc<Self>,
        key: Key,
        fetch: F,
    ) -> (watch::Receiver<Option<FlightResult>>, Role)
    where
        F: Future<Output = Result<Page, GatewayError>> + Send + 'static,
    {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = flights.get(&key) {
            return (receiver.clone(), Role::Collapsed);
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(key, receiver.clone());
        drop(flights);
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let result = cache.fly(key, fetch).await;
            // Publish before leaving the flight table: a caller that arrives in between joins
            // this finished flight rather than starting a new one.
            sender.send_replace(Some(result));
            cache
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
        (receiver, Role::Leader)
    }
}

impl TaskListCache {
    async fn fly<F>(&self, key: Key, fetch: F) -> FlightResult
    where
        F: Future<Output = Result<Page, GatewayError>>,
    {
        // A flight that finished just before this one began has stored a fresh page: use it.
        if let Some(entry) = self.get(&key) {
            if let policy::Freshness::Fresh(_) = policy::freshness(entry.age(), &self.config.load())
            {
                return Ok(Arc::new(Fetched {
                    page: entry.to_page(),
                    stored: false,
                }));
            }
        }
        let requested_at = Instant::now();
        let page = match fetch.await {
            Ok(page) => page,
            Err(error) => {
                if error.is_page_too_large() {
                    self.passes.insert(key, ());
                }
                return Err(Arc::new(error));
            }
        };
        let stored = self.store_if_allowed(key, &page, requested_at);
        Ok(Arc::new(Fetched { page, stored }))
    }
}

/// A flight joined or led: its answer, once it has one.
pub struct Flight(watch::Receiver<Option<FlightResult>>);

impl Flight {
    /// The flight's answer; nobody waits longer than `max_wait`.
    pub async fn wait(mut self, max_wait: std::time::Duration) -> FlightResult {
        let waited = tokio::time::timeout(max_wait, self.0.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(result)) => result.clone().unwrap_or_else(|| Err(Arc::new(lost()))),
            Ok(Err(_)) => Err(Arc::new(lost())),
            Err(_) => Err(Arc::new(GatewayError::UpstreamTimeout(max_wait))),
        }
    }
}

fn lost() -> GatewayError {
    GatewayError::Internal("the upstream request of a collapsed flight was lost".into())
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_key_hashes_to_its_first_word() {
        let mut key: Key = [0; 32];
        key[..8].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_le_bytes());
        key[31] = 1;
        assert_eq!(KeyHash::default().hash_one(key), 0x0123_4567_89ab_cdef);
        let other: Key = [7; 32];
        assert_ne!(
            KeyHash::default().hash_one(other),
            KeyHash::default().hash_one(key)
        );
    }
}
