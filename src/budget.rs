//! The memory budget for buffered bodies (`server.max_buffered_bytes`): one count of the bytes
//! held by every body the gateway reads whole, so that many clients at once cannot make it hold
//! more than the budget, whatever each may send within its own limit.
//!
//! A body reserves its declared length before a byte of it is read, or, without one, reserves as
//! it grows; what it cannot reserve it does not read. A [`Reservation`] gives its bytes back when
//! dropped, so a request that ends in any way (answered, failed, its client gone) releases them.
//! The count is the gauge `koodrive_gateway_buffered_bytes` itself: one atomic update each way.
//!
//! ```
//! use koodrive_gateway::budget::Budget;
//! use prometheus_client::metrics::gauge::Gauge;
//!
//! let budget = Budget::new(100, Gauge::default());
//! let mut first = budget.reserve(60).unwrap();
//! assert!(budget.reserve(60).is_none()); // not now: 60 of 100 are held
//! assert!(first.grow_to(90)); // a chunked body growing
//! drop(first);
//! assert!(budget.reserve(100).is_some()); // all given back
//! ```

use std::sync::atomic::Ordering;

use prometheus_client::metrics::gauge::Gauge;

/// The shared budget; cheap to clone.
#[derive(Clone, Debug)]
pub struct Budget {
    held: Gauge,
    max: u64,
}

impl Budget {
    pub fn new(max: u64, held: Gauge) -> Budget {
        Budget { held, max }
    }

    /// The whole budget: a body larger than this could never be read.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// `bytes` reserved now, or `None` when the budget does not have them free.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let mut reservation = self.none();
        reservation.grow_to(bytes).then_some(reservation)
    }

    /// A reservation of nothing yet, for a body that reserves as it grows.
    pub fn none(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    bytes: u64,
}

impl Reservation {
    /// Holds at least `total` bytes: true if it does (nothing changes when it cannot).
    pub fn grow_to(&mut self, total: u64) -> bool {
        let Some(more) = total.checked_sub(self.bytes).filter(|more| *more > 0) else {
            return true;
        };
        let (Ok(more_i), Ok(max)) = (i64::try_from(more), i64::try_from(self.budget.max)) else {
            return false;
        };
        let taken =
            self.budget
                .held
                .inner()
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                    held.checked_add(more_i).filter(|after| *after <= max)
                });
        if taken.is_ok() {
            self.bytes = total;
        }
        taken.is_ok()
    }

    /// Holds exactly `total` bytes when that is less than now: a body that shrank.
    pub fn shrink_to(&mut self, total: u64) {
        if let Some(less) = self.bytes.checked_sub(total).filter(|less| *less > 0) {
            self.budget
                .held
                .dec_by(i64::try_from(less).unwrap_or(i64::MAX));
            self.bytes = total;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The whole budget this reservation is part of.
    pub fn max(&self) -> u64 {
        self.budget.max
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_at_most_the_budget_and_are_given_back() {
        let gauge = Gauge::default();
        let budget = Budget::new(1000, gauge.clone());
        let a = budget.reserve(400);
        let mut b = budget.none();
        assert!(a.is_some());
        assert!(b.grow_to(600));
        assert_eq!(gauge.get(), 1000);
        assert!(budget.reserve(1).is_none());
        assert!(!b.grow_to(601));
        assert_eq!(b.bytes(), 600);
        b.shrink_to(100);
        assert_eq!(gauge.get(), 500);
        assert!(b.grow_to(50), "already held");
        drop(a);
        drop(b);
        assert_eq!(gauge.get(), 0);
        assert!(budget.reserve(1001).is_none());
        assert!(budget.reserve(1000).is_some());
        assert_eq!(gauge.get(), 0);
    }
}
