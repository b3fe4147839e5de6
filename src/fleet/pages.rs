//! The shared tier's pages and fill locks: pages sealed with the fleet key, looked up on a
//! first-tier miss and stored in the background; locks that make one sidecar fetch a page for
//! the fleet, released after the page's store by the same ordered writer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{scripts, Fleet};

/// A write the request path does not wait for, made in order by one task.
pub(super) enum Write {
    Page {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Unlock {
        key: String,
        token: u64,
    },
}

impl Fleet {
    /// The page stored under `key` in Redis, if its seal holds. A page whose seal fails
    /// (written or altered by another Redis client) is deleted, counted, and never returned.
    /// `counted`: a lookup for a request (not a wait's poll), counted in `fleet_lookups`.
    pub async fn page(&self, key: &[u8; 32], counted: bool) -> Option<Bytes> {
        if !self.is_up() {
            return None;
        }
        let count = |result| {
            if counted {
                self.metrics.fleet.lookup(result);
            }
        };
        let name = self.names.page(key);
        let read_name = name.clone();
        let Some(stored) = self
            .call("lookup", |mut conn| async move {
                redis::cmd("GET")
                    .arg(&read_name)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await
        else {
            count("error");
            return None;
        };
        let Some(stored) = stored else {
            count("miss");
            return None;
        };
        match self.sealer.open(&name, stored) {
            Some(value) => {
                count("hit");
                Some(value)
            }
            None => {
                self.metrics.fleet.lookup("tampered");
                tracing::warn!("fleet: a page in Redis failed its integrity check and was dropped");
                let _: Option<()> = self
                    .call("lookup", |mut conn| async move {
                        redis::cmd("DEL").arg(&name).query_async(&mut conn).await
                    })
                    .await;
                None
            }
        }
    }

    /// Stores a page in Redis for `ttl`, sealed, in the background.
    pub fn store_page(&self, key: &[u8; 32], value: &[u8], ttl: Duration) {
        if !self.is_up() {
            return;
        }
        let name = self.names.page(key);
        let value = self.sealer.seal(&name, value);
        self.queue(Write::Page {
            key: name,
            value,
            ttl,
        });
    }

    /// Counts how a wait on another sidecar's fill ended.
    pub fn lock_waited(&self, result: &'static str) {
        self.metrics
            .fleet
            .lock_waits
            .get_or_create(&crate::metrics::fleet::ResultLabels { result })
            .inc();
    }

    pub(super) fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            self.metrics.fleet.error("store");
        }
    }

    /// Tries to take the fleet-wide fill lock of `key` for `ttl`: `Some` when this sidecar is to
    /// fetch (it holds the lock, or Redis cannot say), `None` when another sidecar holds it.
    pub async fn lock(self: &Arc<Self>, key: &[u8; 32], ttl: Duration) -> Option<LockGuard> {
        let name = self.names.lock(key);
        let token = fastrand::u64(..);
        let set_name = name.clone();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<Option<String>> = self
            .call("lock", |mut conn| async move {
                redis::cmd("SET")
                    .arg(&set_name)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        match taken {
            Some(None) => None,
            Some(Some(_)) => Some(LockGuard {
                fleet: Some((Arc::clone(self), name, token)),
            }),
            None => Some(LockGuard { fleet: None }),
        }
    }
}

/// A fleet-wide fill lock held (or, when Redis could not be asked, nothing): released in the
/// background, after the page's store, when dropped.
pub struct LockGuard {
    fleet: Option<(Arc<Fleet>, String, u64)>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some((fleet, key, token)) = self.fleet.take() {
            fleet.queue(Write::Unlock { key, token });
        }
    }
}

/// Makes the queued writes one after the other on the current connection, so that a page's
/// store reaches Redis before its lock's release.
pub(super) async fn write_in_order(
    fleet: std::sync::Weak<Fleet>,
    mut queued: mpsc::Receiver<Write>,
) {
    while let Some(write) = queued.recv().await {
        let Some(fleet) = fleet.upgrade() else { return };
        match write {
            Write::Page { key, value, ttl } => {
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let _: Option<()> = fleet
                    .call("store", |mut conn| async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("PX")
                            .arg(millis)
                            .query_async(&mut conn)
                            .await
                    })
                    .await;
            }
            Write::Unlock { key, token } => {
                let _: Option<i64> = fleet
                    .call("unlock", |mut conn| async move {
                        scripts::unlock(&key, token).invoke_async(&mut conn).await
                    })
                    .await;
            }
        }
    }
}
