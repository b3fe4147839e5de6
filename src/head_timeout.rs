//! The header-read timeout (`server.header_read_timeout`), kept by the client connection itself
//! rather than by hyper.
//!
//! hyper's own (`http1::Builder::header_read_timeout`) arms a timer for every request head, and
//! after each head makes the connection read once more so that the next head's timer starts. On
//! a cache hit that was a timer-wheel insertion and removal under the time driver's lock plus an
//! extra pass down the read path: about 1,400 of the hit's 28,400 instructions (callgrind, the
//! hit of `bench/compare.sh`).
//!
//! Here the connection counts the requests hyper hands to the service ([`Exchanges::serve`]) and
//! the answers hyper has finished with (their bodies dropped, [`Answer::with`]), and looks at the
//! counts on a coarse tick, a quarter of the timeout apart. A connection that has had nothing in
//! service, and no new request, through a whole timeout is closed: its read fails with
//! `TimedOut`, as with hyper's timeout. So a head sent too slowly, or a keep-alive connection
//! left idle, is cut off between one and one and a quarter timeouts after the last answer (or the
//! connection's start), while a request in service (its body arriving, its answer being made or
//! sent) is never cut off. A request costs two counter increments; the tick is set once per
//! quarter timeout per connection. HTTP/2 connections are left alone, as hyper's HTTP/1 timeout
//! leaves them: those that open with HTTP/2's whole 24-byte preface, which is what hyper-util's
//! `auto` builder serves as HTTP/2. A connection is timed until all of it has come, so neither a
//! head like `PRI /x HTTP/1.1`, served as HTTP/1, nor a preface left unfinished is let off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Response;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Ticks per timeout: the timeout is kept to within a quarter of itself.
const TICKS: u32 = 4;

/// The requests of one client connection: handed to the service, and answered.
#[derive(Debug, Default)]
pub struct Exchanges {
    served: AtomicU64,
    answered: AtomicU64,
}

impl Exchanges {
    /// A request is handed to the service: the connection is busy until the answer made with
    /// the returned [`Answer`] is done with (or the answer is dropped unmade).
    pub fn serve(self: &Arc<Self>) -> Answer {
        self.served.fetch_add(1, Ordering::Relaxed);
        Answer(Arc::clone(self))
    }

    /// The requests served so far, when every one of them has been answered.
    fn idle(&self) -> Option<u64> {
        let served = self.served.load(Ordering::Relaxed);
        (self.answered.load(Ordering::Relaxed) == served).then_some(served)
    }
}

/// One request in service; counted as answered when dropped.
pub struct Answer(Arc<Exchanges>);

impl Answer {
    /// The response to the request, counted as answered once hyper is done with its body.
    pub fn with<B>(self, response: Response<B>) -> Response<Answered<B>> {
        response.map(|body| Answered {
            body,
            _answer: self,
        })
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// An answer's body: the request counts as answered once hyper drops it (sent, or given up).
pub struct Answered<B> {
    body: B,
    _answer: Answer,
}

impl<B: Body + Unpin> Body for Answered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client connection closed once it has waited a whole timeout for a request head.
pub struct HeadTimeout<S> {
    inner: S,
    exchanges: Arc<Exchanges>,
    tick: Duration,
    start: Start,
    sleep: Pin<Box<Sleep>>,
    /// The waker the sleep was last polled with: while it is the same, the sleep needs no poll.
    waker: Option<Waker>,
    /// At the last tick: the requests served, if all were answered, and for how many ticks in a
    /// row that was so with no new request.
    idle: Option<(u64, u32)>,
}

/// What the connection's first bytes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// This many of them match HTTP/2's preface so far: timed, as HTTP/1 is.
    Sniffing(usize),
    Http1,
    /// Never timed out here.
    Http2,
}

impl<S> HeadTimeout<S> {
    pub fn new(inner: S, exchanges: Arc<Exchanges>, timeout: Duration) -> HeadTimeout<S> {
        let tick = (timeout / TICKS).max(Duration::from_millis(1));
        HeadTimeout {
            inner,
            exchanges,
            tick,
            start: Start::Sniffing(0),
            sleep: Box::pin(tokio::time::sleep(tick)),
            waker: None,
            // Waiting for the first head from the start.
            idle: Some((0, 0)),
        }
    }

    /// Follows the connection's first bytes: an HTTP/2 connection is not watched.
    fn sniff(&mut self, data: &[u8]) {
        let Start::Sniffing(matched) = self.start else {
            return;
        };
        let want = &crate::H2_PREFACE[matched..];
        let n = want.len().min(data.len());
        self.start = match want[..n] == data[..n] {
            false => Start::Http1,
            true if matched + n == crate::H2_PREFACE.len() => Start::Http2,
            true => Start::Sniffing(matched + n),
        };
    }

    /// Whether the connection has waited a whole timeout for a head. Ready to wake the task at
    /// the next tick otherwise.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.start == Start::Http2 {
            return false;
        }
        // The common case: between ticks, polled by the same task as before.
        if !self.sleep.is_elapsed() && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return false;
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    self.waker = Some(cx.waker().clone());
                }
                return false;
            }
            self.idle = match (self.exchanges.idle(), self.idle) {
                (Some(served), Some((seen, ticks))) if served == seen => {
                    Some((served, ticks.saturating_add(1)))
                }
                // Idle since some time after the last tick.
                (Some(served), _) => Some((served, 0)),
                (None, _) => None,
            };
            if self.idle.is_some_and(|(_, ticks)| ticks >= TICKS) {
                return true;
            }
            let next = Instant::now() + self.tick;
            self.sleep.as_mut().reset(next);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if matches!(this.start, Start::Sniffing(_)) {
                    this.sniff(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head within server.header_read_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

writes_pass_through!(HeadTimeout);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn connection() -> (DuplexStream, HeadTimeout<DuplexStream>, Arc<Exchanges>) {
        let (client, server) = tokio::io::duplex(1024);
        let exchanges = Arc::new(Exchanges::default());
        let server = HeadTimeout::new(server, Arc::clone(&exchanges), TIMEOUT);
        (client, server, exchanges)
    }

    /// Reads until the connection times out: how long that took.
    async fn time_to_cut_off(server: &mut HeadTimeout<DuplexStream>) -> Duration {
        let started = Instant::now();
        let mut buf = [0; 64];
        loop {
            match server.read(&mut buf).await {
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
                    return started.elapsed();
                }
            }
        }
    }

    /// Whether the connection is still open (reading nothing, failing nothing) for `span`.
    async fn stays_open(server: &mut HeadTimeout<DuplexStream>, span: Duration) -> bool {
        let mut buf = [0; 64];
        tokio::time::timeout(span, server.read(&mut buf))
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_cut_off_after_one_timeout() {
        let (_client, mut server, _) = connection();
        assert_eq!(time_to_cut_off(&mut server).await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_read_from_another_task_wakes_that_task() {
        let (_client, mut server, _) = connection();
        assert!(stays_open(&mut server, TIMEOUT / 8).await);
        let other = tokio::spawn(async move { time_to_cut_off(&mut server).await });
        let took = tokio::time::timeout(TIMEOUT * 2, other).await;
        assert!(matches!(took, Ok(Ok(t)) if t <= TIMEOUT), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickling_in_is_cut_off_within_a_quarter_past_the_timeout() {
        let (mut client, mut server, _) = connection();
        let trickle = tokio::spawn(async move {
            for byte in b"GET /koodrive/ose/v1/task/list HTTP/1.1\r\nHost: x\r\n"
                .iter()
                .cycle()
            {
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let took = time_to_cut_off(&mut server).await;
        assert!(
            took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
            "{took:?}"
        );
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_service_is_never_cut_off_and_the_wait_starts_at_its_answer() {
        let (_client, mut server, exchanges) = connection();
        let answer = exchanges.serve();
        assert!(stays_open(&mut server, TIMEOUT * 10 + TIMEOUT / 8).await);
        drop(answer);
        let took = time_to_cut_off(&mut server).await;
        assert!(
            took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_coming_more_often_than_the_timeout_keep_it_open() {
        let (_client, mut server, exchanges) = connection();
        for _ in 0..20 {
            assert!(stays_open(&mut server, TIMEOUT / 2).await);
            drop(exchanges.serve());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_not_timed_out_even_when_its_preface_comes_in_pieces() {
        let (mut client, mut server, _) = connection();
        let mut buf = [0; 64];
        for piece in [&b"PR"[..], b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
            client.write_all(piece).await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), piece.len());
        }
        assert!(stays_open(&mut server, TIMEOUT * 10).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_like_http2_but_not_it_is_timed_out() {
        // hyper-util serves the first three as HTTP/1, and holds the last, waiting for the rest
        // of a preface: all are timed.
        let starts: [&[u8]; 4] = [
            b"PRX / HTTP/1.1\r\n",
            b"PRI /x HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n",
        ];
        for start in starts {
            let (mut client, mut server, _) = connection();
            client.write_all(start).await.unwrap();
            let took = tokio::time::timeout(TIMEOUT * 10, time_to_cut_off(&mut server)).await;
            assert_eq!(took, Ok(TIMEOUT), "{:?}", String::from_utf8_lossy(start));
        }
    }
}
