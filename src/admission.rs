//! Load shedding: at most `server.max_in_flight` requests (and the fetches that outlive theirs)
//! hold a place at once; the rest are refused with a 503 before any work. The `in_flight` gauge
//! is kept by this type and only by it.

use std::future::Future;
use std::sync::atomic::Ordering;

use prometheus_client::metrics::gauge::Gauge;

/// The limit on requests in flight, and the gauge that counts them.
pub struct Admission {
    gauge: Gauge,
    max: i64,
}

/// A place in flight, given back when dropped: whether the request was answered or its client
/// hung up and hyper dropped it mid-way.
#[must_use]
pub struct Admitted(Gauge);

impl Admission {
    pub fn new(max: usize, gauge: Gauge) -> Admission {
        Admission {
            gauge,
            max: i64::try_from(max).unwrap_or(i64::MAX),
        }
    }

    /// A place if fewer than the limit hold one. The gauge is the count itself: one atomic update
    /// each way, where a semaphore beside the gauge took a lock to give its permit back.
    pub fn admit(&self) -> Option<Admitted> {
        self.gauge
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Admitted(self.gauge.clone()))
    }

    /// The limit, for the 503 that names it.
    pub fn max(&self) -> usize {
        usize::try_from(self.max).unwrap_or(usize::MAX)
    }

    /// `fetch`, holding a place whatever the limit from its first poll to its end: for work that
    /// outlives its request (a background refresh) and still holds an upstream connection, so
    /// new requests are shed while it runs.
    pub fn counted<F: Future>(&self, fetch: F) -> impl Future<Output = F::Output> {
        let gauge = self.gauge.clone();
        async move {
            gauge.inc();
            let _place = Admitted(gauge);
            fetch.await
        }
    }

    /// The gauge, for the fetches that take their place later than they are made.
    pub fn gauge(&self) -> &Gauge {
        &self.gauge
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_gives_places_back() {
        let admission = Admission::new(2, Gauge::default());
        let first = admission.admit();
        let second = admission.admit();
        assert!(first.is_some() && second.is_some());
        assert!(admission.admit().is_none(), "a third is shed");
        drop(first);
        assert_eq!(admission.gauge().get(), 1);
        assert!(admission.admit().is_some());
    }
}
