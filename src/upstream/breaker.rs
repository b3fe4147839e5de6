//! A consecutive-failure circuit breaker for KooDrive. Closed: every request goes. After
//! `threshold` failures in a row: open for `cooldown`, requests fail fast. Then half-open: one
//! probe decides, closing on success and re-opening on failure. The closed path is one atomic
//! load; the lock is taken only around transitions and while open.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{Metrics, ReasonLabels};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: AtomicU8,
    failures: AtomicU32,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

struct Inner {
    open_until: Instant,
    probing: bool,
}

/// Refused while open: how long until a probe is allowed.
#[derive(Debug)]
pub struct Open(pub Duration);

/// Admission to call KooDrive; report the outcome with [`Permit::record`]. Owned, so that it can
/// travel with the response body, whose end is the exchange's. A probe dropped without an outcome
/// (its client went away) lets the next request probe instead.
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration, metrics: Arc<Metrics>) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                open_until: Instant::now(),
                probing: false,
            }),
            metrics,
        }
    }

    pub fn admit(self: &Arc<Self>) -> Result<Permit, Open> {
        if self.threshold == 0 || self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(self.permit(false));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(self.permit(false)),
            OPEN if Instant::now() < inner.open_until => {
                Err(Open(inner.open_until - Instant::now()))
            }
            _ if inner.probing => Err(Open(Duration::from_secs(1))),
            _ => {
                inner.probing = true;
                self.transition(HALF_OPEN, "half_open");
                Ok(self.permit(true))
            }
        }
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            probe,
            recorded: false,
        }
    }

    fn transition(&self, to: u8, name: &'static str) {
        if self.state.swap(to, Ordering::AcqRel) != to {
            // Half-open refuses all but the probe: to callers, still open.
            self.metrics.breaker_open.set(i64::from(to != CLOSED));
            self.metrics
                .breaker_transitions
                .get_or_create(&ReasonLabels { reason: name })
                .inc();
            match to {
                OPEN => {
                    tracing::warn!(cooldown = ?self.cooldown, "circuit breaker open: KooDrive is failing")
                }
                _ => tracing::info!(state = name, "circuit breaker state changed"),
            }
        }
    }

    fn open(&self, inner: &mut Inner) {
        inner.open_until = Instant::now() + self.cooldown;
        inner.probing = false;
        self.transition(OPEN, "open");
    }

    /// Only the probe closes: a request let through before the breaker opened may succeed after
    /// it did, and that says nothing of KooDrive now (it would end the cooldown at once).
    fn success(&self, probe: bool) {
        if probe {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.probing = false;
            self.failures.store(0, Ordering::Relaxed);
            self.transition(CLOSED, "closed");
        } else if self.state.load(Ordering::Acquire) == CLOSED {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    fn failure(&self, probe: bool) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if probe || (self.threshold > 0 && failures >= self.threshold) {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if probe || self.state.load(Ordering::Acquire) == CLOSED {
                self.open(&mut inner);
            }
        }
    }
}

impl Permit {
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        if success {
            self.breaker.success(self.probe);
        } else {
            self.breaker.failure(self.probe);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A probe that ends with no outcome (its client left) passes its turn: still half-open,
        // and the next request probes. Nothing was learnt of KooDrive, so no transition.
        if self.probe && !self.recorded {
            let mut inner = self.breaker.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Arc<Breaker> {
        Arc::new(Breaker::new(
            threshold,
            Duration::from_secs(5),
            Metrics::new(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let b = breaker(3);
        for _ in 0..2 {
            b.admit()
                .map(|p| p.record(false))
                .unwrap_or_else(|_| panic!("closed"));
        }
        b.admit()
            .map(|p| p.record(true))
            .unwrap_or_else(|_| panic!("closed"));
        for _ in 0..3 {
            b.admit()
                .map(|p| p.record(false))
                .unwrap_or_else(|_| panic!("closed"));
        }
        assert!(b.admit().is_err(), "open after 3 in a row");
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.admit().unwrap_or_else(|_| panic!("a probe"));
        assert!(b.admit().is_err(), "one probe at a time");
        probe.record(false);
        assert!(b.admit().is_err(), "a failed probe re-opens");
        tokio::time::advance(Duration::from_secs(6)).await;
        b.admit()
            .map(|p| p.record(true))
            .unwrap_or_else(|_| panic!("a probe"));
        assert!(b.admit().is_ok(), "a good probe closes");
        assert_eq!(b.state.load(Ordering::Acquire), CLOSED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_vanishes_lets_the_next_request_probe() {
        let b = breaker(1);
        b.admit()
            .map(|p| p.record(false))
            .unwrap_or_else(|_| panic!("closed"));
        tokio::time::advance(Duration::from_secs(6)).await;
        drop(b.admit().unwrap_or_else(|_| panic!("a probe")));
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_probe_closes_an_open_breaker() {
        let b = breaker(1);
        let late = b.admit().unwrap_or_else(|_| panic!("closed"));
        b.admit()
            .map(|p| p.record(false))
            .unwrap_or_else(|_| panic!("closed"));
        late.record(true);
        assert!(b.admit().is_err(), "still open within the cooldown");
        tokio::time::advance(Duration::from_secs(6)).await;
        let probe = b.admit().unwrap_or_else(|_| panic!("a probe"));
        probe.record(true);
        assert_eq!(b.state.load(Ordering::Acquire), CLOSED);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let b = breaker(0);
        for _ in 0..100 {
            b.admit()
                .map(|p| p.record(false))
                .unwrap_or_else(|_| panic!("closed"));
        }
        assert!(b.admit().is_ok());
    }
}
