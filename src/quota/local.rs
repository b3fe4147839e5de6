//! One sidecar's budget: a GCRA bucket (`governor`) and the cooldown's end, in this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;
use tokio::time::Instant;

use super::{Budget, Priority, Taking};
use crate::config::RateLimitConfig;
use std::num::NonZeroU32;

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

pub struct LocalBudget {
    /// `None`: no budget (`upstream.rate_limit` not set); the cooldown still applies.
    bucket: Option<Bucket>,
    /// The clock the cooldown is read against.
    origin: Instant,
    /// When the cooldown ends, in milliseconds after `origin` (0: none yet).
    cool_until_ms: AtomicU64,
}

impl LocalBudget {
    pub fn new(limit: Option<RateLimitConfig>) -> LocalBudget {
        let bucket = limit.map(|limit| {
            let quota = governor::Quota::per_second(limit.rps).allow_burst(limit.burst);
            RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>()
        });
        LocalBudget {
            bucket,
            origin: Instant::now(),
            cool_until_ms: AtomicU64::new(0),
        }
    }

    /// One of `sidecars` equal shares of the fleet's budget: the rate divided, the burst divided
    /// but at least one, so that a share is never nothing.
    pub fn share(limit: Option<RateLimitConfig>, sidecars: u32) -> LocalBudget {
        let mut budget = LocalBudget::new(None);
        budget.bucket = limit.and_then(|limit| {
            let sidecars = sidecars.max(1);
            let period = Duration::from_secs(u64::from(sidecars)) / limit.rps.get();
            let burst = NonZeroU32::new(limit.burst.get() / sidecars).unwrap_or(NonZeroU32::MIN);
            let quota = governor::Quota::with_period(period)?.allow_burst(burst);
            Some(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
        });
        budget
    }

    /// Takes one token now: the tokens left, or how long until one is due.
    pub fn take_now(&self) -> Result<u32, Duration> {
        let Some(bucket) = &self.bucket else {
            return Ok(u32::MAX);
        };
        match bucket.check() {
            Ok(snapshot) => Ok(snapshot.remaining_burst_capacity()),
            Err(not_until) => Err(not_until.wait_time_from(bucket.clock().now())),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Budget for LocalBudget {
    fn take(&self, _: Priority) -> Taking<'_> {
        Taking::Now(self.take_now())
    }

    fn cool_down(&self, length: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
        // Extended, never shortened, by a later throttle.
        self.cool_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    fn cooling(&self) -> Option<Duration> {
        let until = self.cool_until_ms.load(Ordering::Acquire);
        // Never cooled down: no clock read.
        if until == 0 {
            return None;
        }
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }
}
