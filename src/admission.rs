//! Load shedding: at most `server.max_in_flight` requests (and the fetches that outlive theirs)
//! hold a place at once; the rest are refused with a 503 before any work. The `in_flight` gauge
//! is kept by this type and only by it.

use std::future::Future;
use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::error::GatewayError;

/// The limit on requests in flight, the gauge that counts them, and the count of those shed.
pub struct Admission {
    gauge: Gauge,
    shed: Counter,
    max: i64,
}

/// A place in flight, given back when dropped: whether the request was answered or its client
/// hung up and hyper dropped it mid-way.
#[must_use]
pub struct Admitted(Gauge);

impl Admission {
    pub fn new(max: usize, gauge: Gauge, shed: Counter) -> Admission {
        Admission {
            gauge,
            shed,
            max: i64::try_from(max).unwrap_or(i64::MAX),
        }
    }

    /// A place if fewer than the limit hold one. The gauge is the count itself: one atomic update
    /// each way, where a semaphore beside the gauge took a lock to give its permit back.
    /// A request over the limit is shed: counted, and refused with a 503 that names the limit.
    pub fn admit(&self) -> Result<Admitted, GatewayError> {
        let admitted = self
            .gauge
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Admitted(self.gauge.clone())),
            Err(_) => {
                self.shed.inc();
                let max = usize::try_from(self.max).unwrap_or(usize::MAX);
                Err(GatewayError::Overloaded(max))
            }
        }
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
        let shed = Counter::default();
        let admission = Admission::new(2, Gauge::default(), shed.clone());
        let first = admission.admit();
        let second = admission.admit();
        assert!(first.is_ok() && second.is_ok());
        let third = admission.admit().err();
        assert!(
            matches!(third, Some(GatewayError::Overloaded(2))),
            "a third is shed"
        );
        assert_eq!(shed.get(), 1);
        drop(first);
        assert_eq!(admission.gauge().get(), 1);
        assert!(admission.admit().is_ok());
    }
}
