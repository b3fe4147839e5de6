//! The storage the gateway runs on: the in-process [`MemoryStorage`] first, and in fleet mode
//! the shared Redis tier second. First-tier hits never wait on Redis; a first-tier miss looks in
//! Redis before KooDrive; a fetched page is written to both (Redis in the background). Without
//! a fleet, every call is the first tier's.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tokio::time::Instant;

use super::storage::{Claim, Generation};
use super::{Entry, Key, MemoryStorage, Page, Storage, Usage};
use crate::fleet::{user_tag, Fleet, Known};

/// A Redis round trip, boxed: only first-tier misses and unknown users in fleet mode make one.
type Shared<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

mod codec;

/// How often a sidecar waiting on another's fill looks for its page in Redis.
const FILL_POLL: Duration = Duration::from_millis(5);

pub struct Tiers {
    first: MemoryStorage,
    fleet: Option<Arc<Fleet>>,
    /// How long pages are kept, in milliseconds (the first tier's retention).
    retention_ms: Arc<AtomicU64>,
    /// How long a fleet-wide fill lock lasts, and so how long others wait on it.
    lock_ttl: Duration,
    /// The epoch of this sidecar's own generations, used when the fleet's is not to be had
    /// (no fleet: 0). In fleet mode it is this process's alone (random, top bit set, which no
    /// clock-seeded fleet epoch reaches), so a page keyed while Redis failed one call, and
    /// stored in Redis meanwhile, is never another sidecar's hit: another sidecar's local
    /// counter for the user knows nothing of this one's writes, nor this one of theirs.
    local_epoch: u64,
}

impl Tiers {
    pub(super) fn new(first: MemoryStorage, retention_ms: Arc<AtomicU64>) -> Tiers {
        Tiers {
            first,
            fleet: None,
            retention_ms,
            lock_ttl: Duration::ZERO,
            local_epoch: 0,
        }
    }

    pub(super) fn with_fleet(mut self, fleet: Arc<Fleet>, lock_ttl: Duration) -> Tiers {
        self.fleet = Some(fleet);
        self.lock_ttl = lock_ttl;
        self.local_epoch = fastrand::u64(1 << 63..);
        self
    }

    pub(super) fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// An entry read from Redis, kept in the first tier too.
    fn kept_from_shared(&self, key: &Key, bytes: &[u8]) -> Option<Entry> {
        let entry = codec::decode(bytes)?;
        self.first.store(*key, entry.clone());
        Some(entry.from_shared_tier())
    }
}

impl Storage for Tiers {
    fn lookup(&self, key: &Key) -> impl Future<Output = Option<Entry>> + Send {
        let hit = self.first.get(key);
        // Boxed, and only on a first-tier miss in fleet mode: a hit's future stays as small
        // as the first tier's alone.
        let shared: Option<Shared<'_, Option<Entry>>> = match (&hit, &self.fleet) {
            (None, Some(fleet)) => {
                let key = *key;
                Some(Box::pin(async move {
                    let bytes = fleet.page(&key, true).await?;
                    self.kept_from_shared(&key, &bytes)
                }))
            }
            _ => None,
        };
        async move {
            match shared {
                Some(shared) => shared.await,
                None => hit,
            }
        }
    }

    async fn lookup_shared(&self, key: &Key) -> Option<Entry> {
        let fleet = self.fleet.as_ref()?;
        let bytes = fleet.page(key, true).await?;
        self.kept_from_shared(key, &bytes)
    }

    fn store(&self, key: Key, entry: Entry) -> bool {
        let page = self
            .fleet
            .as_ref()
            .map(|_| (entry.to_page(), wall_clock(&entry)));
        if !self.first.store(key, entry) {
            return false;
        }
        if let (Some(fleet), Some((page, fetched_ms))) = (&self.fleet, page) {
            let ttl = Duration::from_millis(self.retention_ms.load(Ordering::Relaxed));
            fleet.store_page(&key, &codec::encode(&page, fetched_ms), ttl);
        }
        true
    }

    fn generation(&self, user_id: &HeaderValue) -> impl Future<Output = Generation> + Send {
        // First tier only (no fleet, or fallen back, or the read failed): the local counter,
        // under an epoch no fleet has and, in fleet mode, no other sidecar (`local_epoch`).
        let local = || [self.local_epoch, self.first.local_generation(user_id)];
        // Known at once (no fleet, learned, or fallen back), or read from Redis in a boxed
        // future, so that the common case's future stays small.
        let (known, read): (Option<Generation>, Option<Shared<'_, Option<Generation>>>) =
            match &self.fleet {
                None => (Some(local()), None),
                Some(fleet) => {
                    let user = user_tag(user_id.as_bytes());
                    match fleet.known_generation(&user) {
                        Known::Known(generation) => (Some(generation), None),
                        Known::Down => (Some(local()), None),
                        Known::Ask => (
                            None,
                            Some(Box::pin(async move { fleet.generation(&user).await })),
                        ),
                    }
                }
            };
        async move {
            match (known, read) {
                (Some(generation), _) => generation,
                (None, Some(read)) => match read.await {
                    Some(generation) => generation,
                    None => [self.local_epoch, self.first.local_generation(user_id)],
                },
                (None, None) => [self.local_epoch, self.first.local_generation(user_id)],
            }
        }
    }

    fn invalidate_user(&self, user_id: &HeaderValue) -> impl Future<Output = ()> + Send {
        // The local generation moves too: it is the one used while fallen back.
        self.first.bump_user(user_id);
        // In its own task: a writer whose client hangs up while it waits does not cancel it.
        let bump = self.fleet.as_ref().map(|fleet| {
            let fleet = Arc::clone(fleet);
            let user = user_tag(user_id.as_bytes());
            tokio::spawn(async move { fleet.invalidate_user(&user).await })
        });
        async move {
            if let Some(bump) = bump {
                let _ = bump.await;
            }
        }
    }

    fn purge(&self) -> impl Future<Output = ()> + Send {
        self.first.drop_all();
        let purge = self.fleet.as_ref().map(|fleet| {
            let fleet = Arc::clone(fleet);
            tokio::spawn(async move { fleet.purge().await })
        });
        async move {
            if let Some(purge) = purge {
                let _ = purge.await;
            }
        }
    }

    fn claim(&self, key: &Key) -> impl Future<Output = Claim> + Send {
        let key = *key;
        async move {
            let Some(fleet) = self.fleet.as_ref().filter(|fleet| fleet.is_up()) else {
                return Claim::Fetch(None);
            };
            if let Some(guard) = fleet.lock(&key, self.lock_ttl).await {
                return Claim::Fetch(Some(guard));
            }
            // Another sidecar is fetching this page: wait for it in Redis, as long as its lock
            // lasts, then fetch here.
            let deadline = Instant::now() + self.lock_ttl;
            while Instant::now() < deadline && fleet.is_up() {
                tokio::time::sleep(FILL_POLL).await;
                if let Some(bytes) = fleet.page(&key, false).await {
                    if let Some(entry) = self.kept_from_shared(&key, &bytes) {
                        fleet.lock_waited("filled");
                        return Claim::Filled(entry);
                    }
                }
            }
            fleet.lock_waited("fetched");
            Claim::Fetch(None)
        }
    }

    fn usage(&self) -> Usage {
        self.first.usage()
    }
}

/// When the entry's page was fetched, in Unix milliseconds: the clock other sidecars share.
fn wall_clock(entry: &Entry) -> u64 {
    let fetched = SystemTime::now()
        .checked_sub(entry.age())
        .unwrap_or(UNIX_EPOCH);
    let since = fetched.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// An entry whose page was fetched at `fetched_ms` (Unix milliseconds): its age counts from then.
fn entry_fetched_at(page: &Page, fetched_ms: u64) -> Option<Entry> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let age = now.saturating_sub(Duration::from_millis(fetched_ms));
    let requested_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    Entry::new(page, requested_at)
}
