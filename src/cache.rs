//! The task-list cache: keys that bind a page to the identity that asked (and to that user's
//! generation, so a write invalidates all their pages at once), pages kept in a [`Storage`]
//! tier (the in-process [`MemoryStorage`]), "hit-for-pass" markers for pages too large to share,
//! and the [`lock`] that fills a key once for all its concurrent misses.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use koodrive_gateway::auth::Identity;
//! use koodrive_gateway::cache::{Page, TaskListCache, TaskListQuery};
//! use koodrive_gateway::config::Config;
//! use koodrive_gateway::normalize::Code;
//!
//! let toml = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
//!             [auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"";
//! let config = Config::parse(toml, []).unwrap();
//! let cache = TaskListCache::new(&config.cache);
//! let ada = Identity {
//!     user_id: HeaderValue::from_static("ada"),
//!     credential_sha256: [0; 32],
//!     language: HeaderValue::from_static("en"),
//! };
//! let query = TaskListQuery::parse(Some("status=1")).unwrap();
//! let key = cache.key(&ada, &query).await;
//! let mut headers = HeaderMap::new();
//! headers.insert("content-type", HeaderValue::from_static("application/json"));
//! let page = Page {
//!     status: StatusCode::OK,
//!     headers,
//!     body: r#"{"code":"0"}"#.into(),
//!     code: Code::Unknown,
//! };
//! assert!(cache.store_if_allowed(key, &page, tokio::time::Instant::now()));
//! assert!(cache.get(&key).await.is_some());
//! // A write by Ada moves her to a new generation: her old keys no longer reach the page.
//! cache.invalidate_user(&ada.user_id).await;
//! assert_ne!(cache.key(&ada, &query).await, key);
//! # });
//! ```

pub mod lock;
pub mod outcome;
pub mod page;
pub mod policy;
pub mod query;
pub mod storage;
pub mod tiers;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::admission::Admission;
use crate::auth::Identity;
use crate::config::fleet::FleetConfig;
use crate::config::routes::Windows;
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::fleet::{Fleet, FleetError};
use crate::metrics::Metrics;
use lock::{CacheLock, Fill, Flight, Role};
pub use outcome::{CacheOutcome, PassReason};
pub use page::{Entry, Page};
pub use query::TaskListQuery;
pub use storage::{MemoryStorage, Storage, Usage};
pub use tiers::Tiers;

/// A SHA-256 over identity, generation and canonical query: fixed size, no secret in clear.
pub type Key = [u8; 32];

/// A page one upstream exchange gave, and whether it was stored.
#[derive(Debug)]
pub struct Fetched {
    pub page: Page,
    pub stored: bool,
}

/// How many too-large pages are remembered at once.
const MAX_PASSES: u64 = 10_000;

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

pub struct TaskListCache<S = Tiers> {
    storage: S,
    /// Keys whose page was too large to share ("hit-for-pass", as Varnish calls it): requests for
    /// them stream from KooDrive directly, without a flight that would only learn it again.
    passes: moka::sync::Cache<Key, (), KeyHash>,
    lock: Arc<CacheLock>,
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

impl TaskListCache {
    /// The first tier alone: a single sidecar.
    pub fn new(config: &CacheConfig) -> TaskListCache {
        let retention = Arc::new(AtomicU64::new(retention_ms(config)));
        let first = MemoryStorage::new(config, Arc::clone(&retention));
        let tiers = Tiers::new(first, Arc::clone(&retention));
        TaskListCache::with_storage(config, tiers, retention)
    }

    /// Both tiers: the first, and the fleet's shared Redis tier behind it. `lock_ttl` bounds a
    /// fleet-wide fill (the upstream timeout: no fetch lasts longer).
    pub async fn with_fleet(
        config: &CacheConfig,
        fleet: FleetConfig,
        metrics: Arc<Metrics>,
        lock_ttl: Duration,
    ) -> Result<TaskListCache, FleetError> {
        let retention = Arc::new(AtomicU64::new(retention_ms(config)));
        let first = MemoryStorage::new(config, Arc::clone(&retention));
        let forget = Box::new(first.dropper());
        let fleet = Fleet::start(fleet, metrics, forget).await?;
        let tiers = Tiers::new(first, Arc::clone(&retention)).with_fleet(fleet, lock_ttl);
        Ok(TaskListCache::with_storage(config, tiers, retention))
    }

    /// The fleet (Redis) behind the second tier, when fleet mode is configured: other fleet-wide
    /// state (a shared rate budget) runs its calls through it.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.storage.fleet()
    }
}

impl<S: Storage> TaskListCache<S> {
    fn with_storage(config: &CacheConfig, storage: S, retention: Arc<AtomicU64>) -> Self {
        let passes = moka::sync::Cache::builder()
            .max_capacity(MAX_PASSES)
            .expire_after(Retention(Arc::clone(&retention)))
            .build_with_hasher(KeyHash::default());
        TaskListCache {
            storage,
            passes,
            lock: Arc::default(),
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

    pub async fn key(&self, identity: &Identity, query: &TaskListQuery) -> Key {
        self.keyed(identity, query.canonical().as_bytes()).await
    }

    /// The key of another cached route's answer: `canonical` holds the route and the request's
    /// path and key parameters, so no two routes (nor a route and the task list, whose canonical
    /// query never starts with `/`) share an entry.
    pub async fn route_key(&self, identity: &Identity, canonical: &str) -> Key {
        debug_assert!(canonical.starts_with('/'));
        self.keyed(identity, canonical.as_bytes()).await
    }

    async fn keyed(&self, identity: &Identity, canonical: &[u8]) -> Key {
        let generation = self.storage.generation(&identity.user_id).await;
        let mut hash = Sha256::new();
        for part in [identity.user_id.as_bytes(), identity.language.as_bytes()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.update(identity.credential_sha256);
        for number in generation {
            hash.update(number.to_be_bytes());
        }
        hash.update(canonical);
        hash.finalize().into()
    }

    /// Makes every cached page of this user unreachable at once (its entries age out); in
    /// fleet mode, on every sidecar, before the future ends.
    pub async fn invalidate_user(&self, user_id: &HeaderValue) {
        self.storage.invalidate_user(user_id).await;
    }

    /// Drops every entry (in fleet mode, on every sidecar).
    pub async fn purge_all(&self) {
        self.passes.invalidate_all();
        self.storage.purge().await;
    }

    pub async fn get(&self, key: &Key) -> Option<Entry> {
        self.storage.lookup(key).await
    }

    /// Whether this key's page was recently too large to share: fetch and stream it directly.
    pub fn is_pass(&self, key: &Key) -> bool {
        self.passes.contains_key(key)
    }

    /// Stores the page, fetched by a request sent at `requested_at`, when policy allows and no
    /// page fetched later is stored already; says whether it did. Its age counts from
    /// `requested_at`, as RFC 9111 section 4.2.3 counts the time KooDrive took.
    pub fn store_if_allowed(&self, key: Key, page: &Page, requested_at: Instant) -> bool {
        if !policy::storable(page, self.config.load().max_entry_bytes) {
            return false;
        }
        match Entry::new(page, requested_at) {
            Some(entry) => self.storage.store(key, entry),
            None => false,
        }
    }

    /// Entries and bytes stored, for the metrics.
    pub fn usage(&self) -> Usage {
        self.storage.usage()
    }
}

impl<S: Storage> TaskListCache<S>
where
    Self: Send + Sync + 'static,
{
    /// Runs `fetch` once for all concurrent callers with the same key: joins the flight for
    /// `key` in the air, or starts one (see [`lock`]), which stores a storable page before
    /// anyone is answered.
    pub fn collapse<F>(
        self: &Arc<Self>,
        key: Key,
        windows: Windows,
        fetch: F,
        admission: &Admission,
    ) -> (Flight, Role)
    where
        F: Future<Output = Result<Page, GatewayError>> + Send + 'static,
    {
        let cache = Arc::clone(self);
        let fill = async move { cache.fill(key, windows, fetch).await };
        self.lock.lead_or_join(key, fill, admission)
    }

    /// Starts a flight for `key` unless one is in the air; returns without waiting.
    pub fn refresh_in_background<F>(
        self: &Arc<Self>,
        key: Key,
        windows: Windows,
        fetch: F,
        admission: &Admission,
    ) where
        F: Future<Output = Result<Page, GatewayError>> + Send + 'static,
    {
        let cache = Arc::clone(self);
        let fill = async move { cache.fill(key, windows, fetch).await };
        self.lock.fill_in_background(key, fill, admission);
    }

    async fn fill<F>(&self, key: Key, windows: Windows, fetch: F) -> Fill
    where
        F: Future<Output = Result<Page, GatewayError>>,
    {
        // A flight that finished just before this one began has stored a fresh page: use it.
        // (In fleet mode, a stale first-tier page may have a fresh successor in Redis, stored
        // by another sidecar's fill: a refresh takes that rather than fetching again.)
        let fresh = |entry: &Entry| {
            matches!(
                policy::freshness(entry.age(), windows),
                policy::Freshness::Fresh(_)
            )
        };
        let stored = match self.get(&key).await {
            Some(entry) if !entry.is_shared() && !fresh(&entry) => {
                self.storage.lookup_shared(&key).await
            }
            other => other,
        };
        if let Some(entry) = stored.filter(|entry| fresh(entry)) {
            return Fill::Shared(Arc::new(Fetched {
                page: entry.to_page(),
                stored: false,
            }));
        }
        // In fleet mode, one sidecar fetches for all: another's fetch may give the page.
        let _claim = match self.storage.claim(&key).await {
            storage::Claim::Filled(entry) => {
                return Fill::Shared(Arc::new(Fetched {
                    page: entry.to_page(),
                    stored: false,
                }))
            }
            storage::Claim::Fetch(guard) => guard,
        };
        let requested_at = Instant::now();
        let fill = self.fetched(fetch.await, |page| {
            self.store_if_allowed(key, page, requested_at)
        });
        if matches!(fill, Fill::TooLarge) {
            self.passes.insert(key, ());
        }
        fill
    }

    /// What a fetch gave, typed: `store` decides whether a shareable page was stored.
    pub fn fetched(
        &self,
        result: Result<Page, GatewayError>,
        store: impl FnOnce(&Page) -> bool,
    ) -> Fill {
        match result {
            Ok(page) if policy::private_to_its_request(&page) => Fill::Private(Arc::new(Fetched {
                page,
                stored: false,
            })),
            Ok(page) => {
                let stored = store(&page);
                Fill::Shared(Arc::new(Fetched { page, stored }))
            }
            Err(error) if error.is_page_too_large() => Fill::TooLarge,
            Err(error) => Fill::Failed(Arc::new(error)),
        }
    }
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
