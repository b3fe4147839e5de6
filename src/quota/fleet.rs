//! The fleet's budget: one GCRA bucket and one cooldown in Redis, shared by every sidecar, each
//! call one atomic Lua script run through the fleet's client (under `fleet.timeout` and its
//! fallback breaker; the `redis` crate sends EVALSHA and falls back to EVAL on NOSCRIPT).
//!
//! Each sidecar registers itself every `fleet.heartbeat` in a sorted set scored by Redis's
//! clock, and counts the sidecars seen within the last few heartbeats. While Redis cannot be
//! reached, it spends a local share of the budget (the fleet's divided by that count): bounded,
//! never unlimited, never refusing everything; back to the fleet's bucket when Redis returns.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::{Budget, LocalBudget, Priority, Taking};
use crate::config::RateLimitConfig;
use crate::fleet::Fleet;
use crate::metrics::Metrics;

mod scripts;

/// Heartbeats after which a sidecar that stopped registering is no longer counted.
const LIVE_HEARTBEATS: u32 = 3;

/// How a take answered, as the script returns it.
const COOLING: i64 = -1;
const REFUSED: i64 = 0;
const GRANTED: i64 = 1;
const YIELDED: i64 = 2;

pub struct FleetBudget {
    fleet: Arc<Fleet>,
    limit: Option<RateLimitConfig>,
    keys: scripts::Keys,
    /// This sidecar in the registry (random, fresh at every start).
    id: String,
    /// The cooldown as this sidecar knows it (its own throttles, and the fleet's as heard).
    cooldown: LocalBudget,
    /// The local share, and the sidecar count it was cut for.
    share: ArcSwap<(u32, LocalBudget)>,
    /// One call to Redis at a time from this sidecar, and before when no token can be had (the
    /// fleet's bucket only moves later): waiters do not all ask Redis at every token.
    not_before: tokio::sync::Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl FleetBudget {
    /// A budget shared through `fleet`; registers this sidecar in the background until dropped.
    pub fn start(
        fleet: Arc<Fleet>,
        limit: Option<RateLimitConfig>,
        metrics: Arc<Metrics>,
    ) -> Arc<FleetBudget> {
        let budget = Arc::new(FleetBudget {
            keys: scripts::Keys::new(fleet.key_prefix()),
            id: format!("{:016x}", fastrand::u64(..)),
            fleet,
            limit,
            cooldown: LocalBudget::new(None),
            share: ArcSwap::from_pointee((1, LocalBudget::share(limit, 1))),
            not_before: tokio::sync::Mutex::new(None),
            metrics,
        });
        budget.metrics.quota.fleet_sidecars.set(1);
        tokio::spawn(register(Arc::downgrade(&budget)));
        budget
    }

    /// The local share, recut when the count of live sidecars changed.
    fn recut(&self, sidecars: u32) {
        let sidecars = sidecars.max(1);
        self.metrics.quota.fleet_sidecars.set(i64::from(sidecars));
        if self.share.load().0 != sidecars {
            let share = LocalBudget::share(self.limit, sidecars);
            self.share.store(Arc::new((sidecars, share)));
        }
    }

    fn local_share(&self, active: bool) {
        let active = active && self.limit.is_some();
        self.metrics.quota.local_share_active.set(i64::from(active));
    }

    async fn take_shared(&self, priority: Priority) -> Result<u32, Duration> {
        let mut not_before = self.not_before.lock().await;
        if let Some(left) = not_before.and_then(|at| at.checked_duration_since(Instant::now())) {
            if self.fleet.is_up() {
                return Err(left);
            }
        }
        let invocation = self.keys.take(self.limit, priority);
        let answer: Option<Vec<i64>> = self
            .fleet
            .call("budget", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await;
        let Some([code, value]) = answer.as_deref().and_then(|a| <[i64; 2]>::try_from(a).ok())
        else {
            // Redis is away: this sidecar's share.
            *not_before = None;
            drop(not_before);
            self.local_share(true);
            return self.share.load().1.take_now();
        };
        self.local_share(false);
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0).max(1));
        match code {
            GRANTED => Ok(u32::try_from(value).unwrap_or(u32::MAX)),
            COOLING => {
                self.cooldown.cool_down(micros(value));
                Err(micros(value))
            }
            YIELDED => Err(micros(value)),
            REFUSED => {
                *not_before = Some(Instant::now() + micros(value));
                Err(micros(value))
            }
            _ => Err(micros(value)),
        }
    }
}

impl Budget for FleetBudget {
    fn take(&self, priority: Priority) -> Taking<'_> {
        Taking::Later(Box::pin(self.take_shared(priority)))
    }

    fn cool_down(&self, length: Duration) {
        self.cooldown.cool_down(length);
        let (fleet, invocation) = (Arc::clone(&self.fleet), self.keys.cool_down(length));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Every sidecar backs off at once: the key for those that ask, the hint for the rest.
        runtime.spawn(async move {
            let _: Option<i64> = fleet
                .call("budget", |mut conn| async move {
                    invocation.invoke_async(&mut conn).await
                })
                .await;
        });
    }

    fn cooling(&self) -> Option<Duration> {
        match (self.cooldown.cooling(), self.fleet.heard_cooldown()) {
            (Some(own), Some(heard)) => Some(own.max(heard)),
            (own, heard) => own.or(heard),
        }
    }
}

/// Registers the sidecar every heartbeat, and learns how many are live and whether the fleet
/// is cooling down (a hint this sidecar may have missed).
async fn register(budget: Weak<FleetBudget>) {
    loop {
        let Some(strong) = budget.upgrade() else {
            return;
        };
        let heartbeat = strong.fleet.heartbeat();
        let invocation = strong
            .keys
            .register(&strong.id, heartbeat * LIVE_HEARTBEATS);
        let seen: Option<Vec<i64>> = strong
            .fleet
            .call("register", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await;
        match seen.as_deref() {
            Some([sidecars, cooling]) => {
                strong.recut(u32::try_from(*sidecars).unwrap_or(1));
                strong.local_share(false);
                if *cooling > 0 {
                    let left = Duration::from_millis(u64::try_from(*cooling).unwrap_or(0));
                    strong.cooldown.cool_down(left);
                }
            }
            _ => strong.local_share(true),
        }
        drop(strong);
        tokio::time::sleep(heartbeat).await;
    }
}
