//! hyper's header-read timeout with one timer registration per client connection, not one per
//! request.
//!
//! hyper arms the header-read timeout for every request head: it asks its `Timer` for a new sleep
//! (`now + header_read_timeout`), polls it while the head is incomplete, and drops it once the
//! head is read. With a plain tokio sleep, each of those is a timer-wheel insertion and removal
//! under the time driver's lock, plus an allocation and a runtime-handle clone: about 1,400 of a
//! cache hit's 28,400 instructions (callgrind, `bench/compare.sh`'s hit).
//!
//! [`ConnTimer`] is the timer of one connection. Every sleep hyper asks it for shares the
//! connection's single tokio sleep. A new head's deadline is never earlier than the last one's,
//! so the shared sleep is left where it is; when it fires for an old deadline, the head being
//! read then moves it to its own, which is a few times per `header_read_timeout` at most instead
//! of twice per request. The timeout itself is hyper's, unchanged: a head still has exactly
//! `header_read_timeout` from the moment hyper starts waiting for it.
//!
//! All sleeps of one [`ConnTimer`] must be polled by one task (a connection's): the shared sleep
//! wakes whichever polled it last.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// About 30 years: longer sleeps are cut to this.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The timer of one client connection (see the module's doc).
#[derive(Default)]
pub struct ConnTimer {
    slot: Arc<Mutex<Slot>>,
}

/// The connection's one tokio sleep, made at the first poll.
#[derive(Default)]
struct Slot {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The waker the sleep was last polled with: while it is the same, the sleep needs no poll.
    waker: Option<Waker>,
    /// Times the sleep was set or moved: what the sharing saves (a test counts it).
    armed: u64,
}

impl ConnTimer {
    /// How many times the connection's tokio sleep was set or moved so far.
    pub fn armed(&self) -> u64 {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .armed
    }
}

impl Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        // A duration past the end of `Instant` is a deadline that never comes, as with tokio's
        // own sleep.
        let now = self.now();
        let deadline = now.checked_add(duration.min(FAR_FUTURE)).unwrap_or(now);
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(ConnSleep {
            deadline,
            slot: Arc::clone(&self.slot),
        })
    }

    /// tokio's clock, so that a test runtime with paused time drives the timeout.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(mut sleep) => sleep.deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One sleep hyper asked for: its own deadline, on the connection's shared tokio sleep.
struct ConnSleep {
    deadline: Instant,
    slot: Arc<Mutex<Slot>>,
}

impl Sleep for ConnSleep {}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.poll_until(deadline, cx)
    }
}

impl Slot {
    /// Ready once `deadline` has passed. The shared sleep is moved only when it would fire
    /// after `deadline`, or has fired before it.
    fn poll_until(&mut self, deadline: tokio::time::Instant, cx: &mut Context<'_>) -> Poll<()> {
        // The common case, once per request: the sleep is due before this deadline, has not
        // fired, and will wake this same task.
        if let (Some(sleep), Some(waker)) = (&self.sleep, &self.waker) {
            if sleep.deadline() <= deadline && !sleep.is_elapsed() && waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        loop {
            let sleep = match &mut self.sleep {
                Some(sleep) if sleep.deadline() <= deadline => sleep,
                Some(sleep) => {
                    sleep.as_mut().reset(deadline);
                    self.armed += 1;
                    sleep
                }
                None => {
                    self.armed += 1;
                    self.sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline)))
                }
            };
            let polled = sleep.as_mut().poll(cx);
            if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                self.waker = Some(cx.waker().clone());
            }
            ready!(polled);
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier head's deadline: move it to this one's.
            sleep.as_mut().reset(deadline);
            self.armed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::poll_fn;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Polls a sleep once: whether it is done.
    async fn done(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_its_own_deadline() {
        let timer = ConnTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        assert!(!done(&mut sleep).await);
        tokio::time::advance(TIMEOUT - Duration::from_millis(1)).await;
        assert!(!done(&mut sleep).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(done(&mut sleep).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_sleep_is_woken_at_its_deadline() {
        let timer = ConnTimer::default();
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn heads_one_after_another_share_one_registration() {
        let timer = ConnTimer::default();
        // A request every 10 ms for 5 s: each head polls its sleep, then drops it, as hyper does.
        for _ in 0..500 {
            let mut sleep = timer.sleep(TIMEOUT);
            assert!(!done(&mut sleep).await);
            drop(sleep);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(timer.armed(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_polled_from_another_task_wakes_that_task() {
        let timer = Arc::new(ConnTimer::default());
        let mut first = timer.sleep(TIMEOUT);
        assert!(!done(&mut first).await);
        drop(first);
        let started = tokio::time::Instant::now();
        let other = tokio::spawn({
            let timer = Arc::clone(&timer);
            async move { timer.sleep(TIMEOUT).await }
        });
        let woken = tokio::time::timeout(TIMEOUT * 2, other).await;
        assert!(woken.is_ok(), "the other task was never woken");
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_head_is_not_cut_off_by_an_earlier_heads_deadline() {
        let timer = ConnTimer::default();
        let mut first = timer.sleep(TIMEOUT);
        assert!(!done(&mut first).await);
        drop(first);
        // The next head starts 4 s later: its deadline is 14 s, the shared sleep's is 10 s.
        tokio::time::advance(Duration::from_secs(4)).await;
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_eq!(started.elapsed(), TIMEOUT);
        assert_eq!(timer.armed(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_shared_sleep_forward() {
        let timer = ConnTimer::default();
        let mut long = timer.sleep(Duration::from_secs(60));
        assert!(!done(&mut long).await);
        drop(long);
        let started = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(1)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleep_in_place() {
        let timer = ConnTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        let started = tokio::time::Instant::now();
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(3));
        sleep.await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_duration_past_the_end_of_time_never_ends() {
        let timer = ConnTimer::default();
        let mut sleep = timer.sleep(Duration::MAX);
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert!(!done(&mut sleep).await);
    }
}
