//! A body wrapper that fails once a deadline passes, so `upstream.timeout` bounds the whole
//! exchange and a stalled upstream body cannot hold a client (or a cache waiter) forever. It also
//! carries the exchange's circuit-breaker permit: how an exchange ended is known at its body's end,
//! not when its head arrives (a KooDrive that always stalls or resets mid-body must trip it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::breaker::Permit;
use crate::body::BoxError;

/// The body was still streaming when the exchange's time (`upstream.timeout`) ran out.
#[derive(Debug, thiserror::Error)]
#[error("upstream body not finished within {0:?}")]
pub struct DeadlineElapsed(pub Duration);

pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    /// When the exchange began, and how long it has waited on KooDrive (for its head, then its
    /// inner body pending while the reader asked for more) since then. The rest of its life it waited on the reader: a
    /// client reading slowly. At the deadline, KooDrive is blamed only for a body it held up more
    /// than the reader did.
    began: Instant,
    upstream_wait: Duration,
    pending_since: Option<Instant>,
    /// The exchange's admission, until it is told how the exchange ended: a success at the body's
    /// end, a failure when the body errs or outlives the deadline. A body dropped before either
    /// (its reader left mid-way) tells nothing: that says nothing of KooDrive, and a success
    /// would count an exchange that might yet have stalled.
    outcome: Option<Permit>,
    /// For a 5xx: a failure at the body's end unless the body carried KooDrive's throttling code
    /// (a refusal, never a failure). Holds the last bytes seen, to find the code across frames.
    server_error: Option<Vec<u8>>,
    /// For a 5xx, the exchange's span: the breaker's verdict comes at the body's end, read
    /// later, but what it logs (the breaker opening) belongs to the exchange.
    span: Option<tracing::Span>,
    throttled: bool,
}

impl<B: Body> Deadline<B> {
    #[cfg(test)]
    pub fn new(inner: B, deadline: Instant, timeout: Duration, outcome: Option<Permit>) -> Self {
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        Deadline::with_sleep(inner, sleep, timeout, outcome, false)
    }

    /// The body of an exchange whose timer, `sleep`, has run since the exchange began (its
    /// deadline is the exchange's); `server_error` for an answer whose status is a 5xx.
    pub fn with_sleep(
        inner: B,
        sleep: Pin<Box<Sleep>>,
        timeout: Duration,
        outcome: Option<Permit>,
        server_error: bool,
    ) -> Self {
        // The exchange began `timeout` before its deadline; until its head came, it waited on
        // KooDrive.
        let now = Instant::now();
        let began = sleep.deadline().checked_sub(timeout).unwrap_or(now);
        let mut body = Deadline {
            inner,
            sleep,
            timeout,
            began,
            upstream_wait: now.saturating_duration_since(began),
            pending_since: None,
            outcome,
            server_error: server_error.then(Vec::new),
            span: server_error.then(tracing::Span::current),
            throttled: false,
        };
        // No body (HEAD, 204, 304, a zero length): over already, and hyper never polls it.
        if body.inner.is_end_stream() {
            body.record(true);
        }
        body
    }

    fn record(&mut self, success: bool) {
        let success = success && (self.server_error.is_none() || self.throttled);
        if let Some(permit) = self.outcome.take() {
            match &self.span {
                Some(span) => span.in_scope(|| permit.record(success)),
                None => permit.record(success),
            }
        }
    }

    /// Looks for the throttling code in a 5xx body's data, across frame boundaries.
    fn scan(&mut self, data: &[u8]) {
        let Some(tail) = self.server_error.as_mut() else {
            return;
        };
        if self.throttled {
            return;
        }
        tail.extend_from_slice(data);
        self.throttled = crate::quota::apig_throttle(tail);
        let keep = tail.len().saturating_sub(crate::quota::APIG_WINDOW);
        tail.drain(..keep);
    }

    /// At the deadline: whether KooDrive held the body up more than its reader did.
    fn upstream_stalled(&self, now: Instant) -> bool {
        let waiting = self
            .pending_since
            .map_or(Duration::ZERO, |since| now - since);
        (self.upstream_wait + waiting) * 2 >= now - self.began
    }
}

impl<B> Body for Deadline<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let Some(since) = self.pending_since.take() {
                self.upstream_wait += since.elapsed();
            }
            if let Some(Ok(data)) = &frame {
                if let Some(data) = data.data_ref() {
                    self.scan(bytes::Buf::chunk(data));
                }
            }
            match &frame {
                None => self.record(true),
                Some(Err(_)) => self.record(false),
                // hyper stops polling a body that says it has ended: its last frame is its end.
                Some(Ok(_)) if self.outcome.is_some() && self.inner.is_end_stream() => {
                    self.record(true)
                }
                Some(Ok(_)) => {}
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // A reader too slow for the deadline says nothing of KooDrive: its admission
                // ends with no outcome.
                match self.upstream_stalled(Instant::now()) {
                    true => self.record(false),
                    false => drop(self.outcome.take()),
                }
                Poll::Ready(Some(Err(Box::new(DeadlineElapsed(self.timeout)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::super::breaker::Breaker;
    use super::*;
    use crate::metrics::Metrics;

    /// A body whose next frame never comes.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }

    /// A breaker opened by one failure, its cooldown over: the next admission is the probe.
    async fn probing() -> Arc<Breaker> {
        let breaker = Arc::new(Breaker::new(1, Duration::from_secs(5), Metrics::new()));
        breaker
            .admit()
            .map(|p| p.record(false))
            .unwrap_or_else(|_| panic!("closed"));
        tokio::time::advance(Duration::from_secs(6)).await;
        breaker
    }

    fn deadline<B: Body>(body: B, breaker: &Arc<Breaker>) -> Deadline<B> {
        let probe = breaker.admit().unwrap_or_else(|_| panic!("a probe"));
        let at = Instant::now() + Duration::from_secs(1);
        Deadline::new(body, at, Duration::from_secs(1), Some(probe))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_read_to_its_end_is_a_success() {
        for body in [Bytes::new(), Bytes::from_static(b"{}")] {
            let breaker = probing().await;
            let mut body = deadline(Full::new(body), &breaker);
            // As hyper does: polled until it says it has ended, never past that.
            while !body.is_end_stream() {
                assert!(body.frame().await.is_some_and(|f| f.is_ok()));
            }
            assert!(breaker.admit().is_ok() && breaker.admit().is_ok(), "closed");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_the_deadline_is_a_failure() {
        let breaker = probing().await;
        let mut body = deadline(Stalled, &breaker);
        assert!(body.frame().await.is_some_and(|f| f.is_err()));
        assert!(breaker.admit().is_err(), "open again");
    }

    /// A body whose first frame is ready at once and whose next never comes.
    struct OneThenStalled(bool);

    impl Body for OneThenStalled {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match std::mem::replace(&mut self.0, false) {
                true => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x"))))),
                false => Poll::Pending,
            }
        }
    }

    /// The deadline passing while the body mostly waited on its reader (a client reading slowly)
    /// cuts the body off but says nothing of KooDrive; one it mostly waited on KooDrive for is
    /// KooDrive's failure.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_blames_koodrive_only_for_the_time_it_held_the_body_up() {
        for (reader_ms, blamed) in [(900, false), (300, true)] {
            let breaker = probing().await;
            let mut body = deadline(OneThenStalled(true), &breaker);
            assert!(body.frame().await.is_some_and(|f| f.is_ok()));
            tokio::time::advance(Duration::from_millis(reader_ms)).await;
            assert!(body.frame().await.is_some_and(|f| f.is_err()), "cut off");
            match blamed {
                true => assert!(breaker.admit().is_err(), "{reader_ms}: open again"),
                false => {
                    let probe = breaker.admit();
                    assert!(probe.is_ok(), "{reader_ms}: a probe, not open");
                    assert!(breaker.admit().is_err(), "{reader_ms}: one probe at a time");
                }
            }
        }
    }

    /// The time KooDrive took to send its head counts against it too, not only the body's life.
    /// KooDrive held this exchange up 900 ms of 1 s, its reader 100 ms: KooDrive's failure.
    #[tokio::test(start_paused = true)]
    async fn the_time_koodrive_took_before_its_head_counts_against_it() {
        let breaker = probing().await;
        let probe = breaker.admit().unwrap_or_else(|_| panic!("a probe"));
        // The exchange began 900 ms ago: KooDrive sent its head just now, 100 ms are left.
        let at = Instant::now() + Duration::from_millis(100);
        let mut body = Deadline::new(
            OneThenStalled(true),
            at,
            Duration::from_secs(1),
            Some(probe),
        );
        assert!(body.frame().await.is_some_and(|f| f.is_ok()));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(body.frame().await.is_some_and(|f| f.is_err()), "cut off");
        assert!(
            breaker.admit().is_err(),
            "KooDrive held the exchange up 900 ms of 1 s and its reader 100 ms, yet the probe \
             ended with no outcome (a new probe was admitted)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_mid_way_tells_nothing() {
        let breaker = probing().await;
        drop(deadline(Stalled, &breaker));
        // Neither closed nor opened for a cooldown: the next request probes instead.
        let probe = breaker.admit();
        assert!(probe.is_ok(), "a probe");
        assert!(breaker.admit().is_err(), "one probe at a time");
    }
}
