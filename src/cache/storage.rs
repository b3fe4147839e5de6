//! Where pages are kept, behind one trait: a second tier (shared, remote) is a second
//! implementation beside [`MemoryStorage`], not a branch in the request path.
//!
//! Reads are futures, so that a remote tier can await its answer; the in-process tier answers
//! at once (`std::future::Ready`), which costs a hit nothing. Writes return at once: a remote
//! tier sends them in the background, as a miss must not wait on a second store.

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use http::HeaderValue;
use moka::ops::compute::{CompResult, Op};

use super::{Entry, Key, KeyHash, Retention};
use crate::config::CacheConfig;

/// Past this many users with a generation, all generations are reset at once (a full
/// invalidation), so that the table stays bounded.
const MAX_TRACKED_USERS: usize = 100_000;

/// The generation a key is built from: an epoch (the fleet's, or 0 for the first tier alone)
/// and the user's counter.
pub type Generation = [u64; 2];

/// What a fill does before it fetches: fetch (holding the fleet-wide lock, when there is one),
/// or take the page another sidecar's fetch just stored.
pub enum Claim {
    Fetch(Option<crate::fleet::LockGuard>),
    Filled(Entry),
}

/// One tier of page storage.
pub trait Storage: Send + Sync + 'static {
    /// The entry stored under `key`, if any.
    fn lookup(&self, key: &Key) -> impl Future<Output = Option<Entry>> + Send;

    /// Stores `entry` unless one fetched later is stored already (a slow fetch must not put an
    /// older page back over a newer one); says whether it did.
    fn store(&self, key: Key, entry: Entry) -> bool;

    /// The user's generation, part of every key of theirs: bumped, it makes all their pages
    /// unreachable at once.
    fn generation(&self, user_id: &HeaderValue) -> impl Future<Output = Generation> + Send;

    /// Makes every stored page of this user unreachable (its entries age out); a shared tier
    /// has done so for every sidecar when the future ends.
    fn invalidate_user(&self, user_id: &HeaderValue) -> impl Future<Output = ()> + Send;

    /// Drops every entry.
    fn purge(&self) -> impl Future<Output = ()> + Send;

    /// The shared tier's entry under `key`, past the first tier (whose page is stale): none
    /// without a shared tier.
    fn lookup_shared(&self, key: &Key) -> impl Future<Output = Option<Entry>> + Send;

    /// Called by a fill before it fetches: a shared tier makes one sidecar fetch for all.
    fn claim(&self, key: &Key) -> impl Future<Output = Claim> + Send;

    /// Entries and bytes held, for the metrics (up to date: pending housekeeping is run first).
    fn usage(&self) -> Usage;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
}

/// The in-process tier: moka bounded by bytes, and per-user generations for constant-time
/// invalidation.
pub struct MemoryStorage {
    /// moka's sync cache: nothing here waits on I/O, and its future cache made every hit build
    /// and poll a future for the lookup. A lookup never blocks (moka drops read records rather
    /// than wait); an insert may sleep 50 us when moka's write log is full while another worker
    /// runs its housekeeping, and inserts come only as fast as KooDrive answers misses.
    entries: moka::sync::Cache<Key, Entry, KeyHash>,
    generations: RwLock<Generations>,
}

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

impl MemoryStorage {
    /// Bounded by `cache.max_bytes`; each entry kept for the retention in force when stored.
    pub(super) fn new(config: &CacheConfig, retention: Arc<AtomicU64>) -> MemoryStorage {
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &Key, entry: &Entry| entry.weight())
            .expire_after(Retention(retention))
            .build_with_hasher(KeyHash::default());
        MemoryStorage {
            entries,
            generations: RwLock::default(),
        }
    }

    /// The first tier's entry under `key`: what a hit costs.
    pub(super) fn get(&self, key: &Key) -> Option<Entry> {
        self.entries.get(key)
    }

    /// A handle that drops every entry, for the fleet to call when the first tier cannot be
    /// proven current.
    pub(super) fn dropper(&self) -> impl Fn() + Send + Sync + 'static {
        let entries = self.entries.clone();
        move || entries.invalidate_all()
    }

    pub(super) fn local_generation(&self, user_id: &HeaderValue) -> u64 {
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
}

impl Storage for MemoryStorage {
    fn lookup(&self, key: &Key) -> impl Future<Output = Option<Entry>> + Send {
        ready(self.get(key))
    }

    fn store(&self, key: Key, entry: Entry) -> bool {
        MemoryStorage::store(self, key, entry)
    }

    fn generation(&self, user_id: &HeaderValue) -> impl Future<Output = Generation> + Send {
        ready([0, self.local_generation(user_id)])
    }

    fn invalidate_user(&self, user_id: &HeaderValue) -> impl Future<Output = ()> + Send {
        self.bump_user(user_id);
        ready(())
    }

    fn purge(&self) -> impl Future<Output = ()> + Send {
        self.drop_all();
        ready(())
    }

    fn lookup_shared(&self, _key: &Key) -> impl Future<Output = Option<Entry>> + Send {
        ready(None)
    }

    fn claim(&self, _key: &Key) -> impl Future<Output = Claim> + Send {
        ready(Claim::Fetch(None))
    }

    fn usage(&self) -> Usage {
        MemoryStorage::usage(self)
    }
}

impl MemoryStorage {
    /// Moves the user to a new generation.
    pub(super) fn bump_user(&self, user_id: &HeaderValue) {
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

    /// Moves everyone to a new generation and drops every entry.
    pub(super) fn drop_all(&self) {
        let mut generations = self.generations.write().unwrap_or_else(|p| p.into_inner());
        generations.last += 1;
        generations.floor = generations.last;
        generations.by_user.clear();
        self.entries.invalidate_all();
    }

    pub(super) fn store(&self, key: Key, entry: Entry) -> bool {
        let requested_at = entry.requested_at();
        let outcome = self
            .entries
            .entry(key)
            .and_compute_with(|stored| match stored {
                Some(stored) if stored.value().requested_at() > requested_at => Op::Nop,
                _ => Op::Put(entry),
            });
        !matches!(outcome, CompResult::Unchanged(_) | CompResult::StillNone(_))
    }

    pub(super) fn usage(&self) -> Usage {
        // moka counts entries and bytes in its pending maintenance: run it first, or a scrape
        // right after a store or a purge reads the old figures. (Per scrape, never per request.)
        self.entries.run_pending_tasks();
        Usage {
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
        }
    }
}
