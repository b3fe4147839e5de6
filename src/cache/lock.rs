//! The cache lock: concurrent misses for one key wait on one fill (a "flight") rather than each
//! asking KooDrive, and learn its result as a type: a page to share, a page for the request
//! that fetched it only, a page too large to share, or a failure. The fill runs in its own task,
//! so a leader whose client goes away does not fail its waiters; while it runs it holds a place
//! in flight (the leader's, until the leader leaves; its own after that), all counted here.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use koodrive_gateway::admission::Admission;
//! use koodrive_gateway::cache::lock::{CacheLock, Fill, Role};
//! use prometheus_client::metrics::gauge::Gauge;
//!
//! let lock = Arc::new(CacheLock::default());
//! let admission = Admission::new(10, Gauge::default(), Default::default());
//! let key = [7; 32];
//! let (leader, role) = lock.lead_or_join(key, async { Fill::TooLarge }, &admission);
//! assert_eq!(role, Role::Leader);
//! // A miss for the same key while the fill is in the air joins it.
//! let (waiter, role) = lock.lead_or_join(key, async { unreachable!() }, &admission);
//! assert_eq!(role, Role::Collapsed);
//! for flight in [leader, waiter] {
//!     assert!(matches!(flight.wait(Duration::from_secs(5)).await, Fill::TooLarge));
//! }
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Fetched, Key};
use crate::admission::Admission;
use crate::error::GatewayError;
use prometheus_client::metrics::gauge::Gauge;

/// What a fill gave its waiters.
#[derive(Debug, Clone)]
pub enum Fill {
    /// A page every waiter may have (and stored, if policy allowed).
    Shared(Arc<Fetched>),
    /// A page for the leader's request only (`Set-Cookie`, or a `Vary` the key does not hold):
    /// the other waiters fetch on their own.
    Private(Arc<Fetched>),
    /// Over `normalize.max_body`: every waiter, the leader too, fetches on its own and streams.
    TooLarge,
    /// KooDrive failed, or the fill did: every waiter answers with this error.
    Failed(Arc<GatewayError>),
}

/// Whether a request led its flight or joined one already in the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Collapsed,
}

/// The flights in the air, by key.
#[derive(Default)]
pub struct CacheLock {
    flights: Mutex<HashMap<Key, watch::Receiver<Option<Fill>>>>,
}

/// A flight joined or led: its result, once it has one. A leader's also hands its place in
/// flight over to the fill when dropped before the fill ends.
pub struct Flight {
    result: watch::Receiver<Option<Fill>>,
    _leaving: Option<LeaderLeaving>,
}

impl CacheLock {
    /// Joins the flight for `key` in the air, or starts one that runs `fill` in its own task.
    pub fn lead_or_join<F>(
        self: &Arc<Self>,
        key: Key,
        fill: F,
        admission: &Admission,
    ) -> (Flight, Role)
    where
        F: Future<Output = Fill> + Send + 'static,
    {
        // The leader's own place in max_in_flight covers its fill; a fill its leader leaves
        // before it ends (a client hanging up) counts by itself from then on.
        let place = Arc::new(Place::new(admission.gauge().clone()));
        let (result, role) = self.start(key, fill, FillEnded(Arc::clone(&place)));
        let flight = Flight {
            result,
            _leaving: (role == Role::Leader).then(|| LeaderLeaving(place)),
        };
        (flight, role)
    }

    /// Starts a fill for `key` unless one is in the air, counted in flight from its start (its
    /// requester does not wait); returns at once.
    pub fn fill_in_background<F>(self: &Arc<Self>, key: Key, fill: F, admission: &Admission)
    where
        F: Future<Output = Fill> + Send + 'static,
    {
        drop(self.start(key, admission.counted(fill), ()));
    }

    /// Joins or starts the flight; `guard` goes with a started fill's task.
    fn start<F, G>(
        self: &Arc<Self>,
        key: Key,
        fill: F,
        guard: G,
    ) -> (watch::Receiver<Option<Fill>>, Role)
    where
        F: Future<Output = Fill> + Send + 'static,
        G: Send + 'static,
    {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = flights.get(&key) {
            return (receiver.clone(), Role::Collapsed);
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(key, receiver.clone());
        drop(flights);
        let lock = Arc::clone(self);
        tokio::spawn(async move {
            let result = fill.await;
            // Its place is given back before its waiters learn the result, so a leader
            // answered at once never hands over a place for a fill that is over.
            drop(guard);
            // Publish before leaving the table: a caller that arrives in between joins this
            // finished flight rather than starting a new one.
            sender.send_replace(Some(result));
            lock.flights
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
        (receiver, Role::Leader)
    }
}

impl Flight {
    /// The flight's result; nobody waits longer than `max_wait`.
    pub async fn wait(mut self, max_wait: Duration) -> Fill {
        let waited = tokio::time::timeout(max_wait, self.result.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(result)) => result.clone().unwrap_or_else(lost),
            Ok(Err(_)) => lost(),
            Err(_) => Fill::Failed(Arc::new(GatewayError::UpstreamTimeout(max_wait))),
        }
    }
}

fn lost() -> Fill {
    Fill::Failed(Arc::new(GatewayError::Internal(
        "the upstream request of a collapsed flight was lost".into(),
    )))
}

/// Whether a fill's leader left before the fill ended, and so whether the fill counts in
/// `in_flight` by itself: [`RUNNING`] while its leader waits, then [`ORPHANED`] or [`ENDED`],
/// whichever comes first.
struct Place {
    state: AtomicU8,
    in_flight: Gauge,
}

const RUNNING: u8 = 0;
const ORPHANED: u8 = 1;
const ENDED: u8 = 2;

impl Place {
    fn new(in_flight: Gauge) -> Place {
        Place {
            state: AtomicU8::new(RUNNING),
            in_flight,
        }
    }
}

/// Held by the fill's task: its end (or drop) gives back a place taken over from its leader.
struct FillEnded(Arc<Place>);

impl Drop for FillEnded {
    fn drop(&mut self) {
        if self.0.state.swap(ENDED, Ordering::AcqRel) == ORPHANED {
            self.0.in_flight.dec();
        }
    }
}

/// Held by a flight's leader while it waits: when it goes (answered, timed out, or its client
/// gone) before the fill ends, the fill takes over its place in `in_flight`.
struct LeaderLeaving(Arc<Place>);

impl Drop for LeaderLeaving {
    fn drop(&mut self) {
        // Usually the fill has ended (the leader was answered): nothing to hand over.
        if self.0.state.load(Ordering::Acquire) != RUNNING {
            return;
        }
        // Counted first, so the fill's end can never uncount it before it was counted.
        self.0.in_flight.inc();
        let orphaned =
            self.0
                .state
                .compare_exchange(RUNNING, ORPHANED, Ordering::AcqRel, Ordering::Acquire);
        if orphaned.is_err() {
            self.0.in_flight.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_leader_leaving_hands_its_place_to_the_fill_until_it_ends() {
        let lock = Arc::new(CacheLock::default());
        let admission = Admission::new(10, Gauge::default(), Default::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let fill = async move {
            let _ = released.await;
            Fill::TooLarge
        };
        let (leader, _) = lock.lead_or_join([1; 32], fill, &admission);
        assert_eq!(
            admission.gauge().get(),
            0,
            "the leader's own place covers it"
        );
        drop(leader);
        assert_eq!(
            admission.gauge().get(),
            1,
            "the orphaned fill counts itself"
        );
        let (waiter, role) = lock.lead_or_join([1; 32], async { Fill::TooLarge }, &admission);
        assert_eq!(role, Role::Collapsed);
        let _ = release.send(());
        assert!(matches!(
            waiter.wait(Duration::from_secs(10)).await,
            Fill::TooLarge
        ));
        // The fill's task drops its guard right after publishing.
        let settled = tokio::time::timeout(Duration::from_secs(10), async {
            while admission.gauge().get() != 0 {
                tokio::task::yield_now().await;
            }
        });
        assert!(settled.await.is_ok(), "the place is given back");
    }

    #[tokio::test]
    async fn a_background_fill_counts_itself_while_it_runs() {
        let lock = Arc::new(CacheLock::default());
        let admission = Admission::new(10, Gauge::default(), Default::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (started, on_start) = tokio::sync::oneshot::channel::<()>();
        let fill = async move {
            let _ = started.send(());
            let _ = released.await;
            Fill::TooLarge
        };
        lock.fill_in_background([2; 32], fill, &admission);
        let began = tokio::time::timeout(Duration::from_secs(10), on_start).await;
        assert!(matches!(began, Ok(Ok(()))));
        assert_eq!(admission.gauge().get(), 1);
        let _ = release.send(());
        let settled = tokio::time::timeout(Duration::from_secs(10), async {
            while admission.gauge().get() != 0 {
                tokio::task::yield_now().await;
            }
        });
        assert!(settled.await.is_ok(), "the place is given back");
    }
}
