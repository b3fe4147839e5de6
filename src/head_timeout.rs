//! The header-read timeout (`server.header_read_timeout`), kept by the client connection itself
//! rather than by hyper.
//!
//! hyper's own (`http1::Builder::header_read_timeout`) arms a timer for every request head, and
//! after each head makes the connection read once more so that the next head's timer starts: on
//! a cache hit, a timer-wheel insertion and removal under the time driver's lock plus an extra
//! pass down the read path, a cost this module avoids (bench/RESULTS.md has the figures).
//!
//! Here the connection counts the requests hyper hands to the service ([`Exchanges::serve`]) and
//! the answers hyper has finished with (their bodies dropped, [`Answer::with`]), and looks at the
//! counts on a coarse tick, a quarter of the smaller timeout apart. A connection that has had
//! nothing in service, and no new request, for too long is closed: its read fails with
//! `TimedOut`, as with hyper's timeout. So a head sent too slowly, or a connection left idle, is
//! cut off within a tick after its bound, counted from the last answer (or the connection's
//! start), while a request in service (its body arriving, its answer being made or sent) is
//! never cut off. A request costs two counter increments; the tick is set once per tick per
//! connection.
//!
//! The bounds ([`Timeouts`]): before its first request, and between HTTP/1 requests, a
//! connection waits the smaller of the header-read and idle timeouts; an HTTP/2 connection that
//! has been served waits the idle timeout between requests. HTTP/2 is told by its whole 24-byte
//! preface, which is what hyper-util's `auto` builder serves as HTTP/2 (a connection is timed as
//! HTTP/1 until all of it has come, so neither a head like `PRI /x HTTP/1.1` nor a preface left
//! unfinished is let off). After the preface the frames' 9-byte headers are followed: a header
//! block (HEADERS without END_HEADERS, then CONTINUATION frames) still open a header-read
//! timeout after it began closes the connection, whatever else is in service on it, since
//! hyper never hands such a request to the service. A connection past its whole life
//! (`max_age`) is closed too: an HTTP/1 one by its next answer, marked `Connection: close`, an
//! HTTP/2 one once nothing is in service.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

pub use exchanges::{Answer, Answered, Exchanges};
use frames::Frames;

mod exchanges;
mod frames;

/// Ticks per timeout: the timeout is kept to within a quarter of itself.
const TICKS: u32 = 4;

/// How long a client connection may wait, by what it waits for.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request head (HTTP/1, and any connection's first request), and for the rest of an
    /// HTTP/2 header block once it has begun.
    pub header_read: Duration,
    /// With no request in service: an HTTP/1 connection waits for its next head the smaller of
    /// the two; an HTTP/2 connection, after its first request, this.
    pub idle: Duration,
    /// The connection's whole life: past it, an HTTP/1 connection's next answer says
    /// `Connection: close`, and an HTTP/2 connection with nothing in service is closed.
    pub max_age: Duration,
}

/// A client connection closed once it has waited too long for a request (see [`Timeouts`]).
pub struct HeadTimeout<S> {
    inner: S,
    exchanges: Arc<Exchanges>,
    timeouts: Timeouts,
    tick: Duration,
    start: Start,
    sleep: Pin<Box<Sleep>>,
    /// The waker the sleep was last polled with: while it is the same, the sleep needs no poll.
    waker: Option<Waker>,
    /// At the last tick: the requests served, if all were answered, and since when that was so
    /// with no new request.
    idle: Option<(u64, Instant)>,
    /// When the connection began.
    born: Instant,
}

/// What the connection's first bytes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// This many of them match HTTP/2's preface so far: timed, as HTTP/1 is.
    Sniffing(usize),
    Http1,
    /// Its frames are followed, for header blocks left open.
    Http2(Frames),
}

impl<S> HeadTimeout<S> {
    pub fn new(inner: S, exchanges: Arc<Exchanges>, timeouts: Timeouts) -> HeadTimeout<S> {
        let shortest = timeouts
            .header_read
            .min(timeouts.idle)
            .min(timeouts.max_age);
        let tick = (shortest / TICKS).max(Duration::from_millis(1));
        HeadTimeout {
            inner,
            exchanges,
            timeouts,
            tick,
            start: Start::Sniffing(0),
            sleep: Box::pin(tokio::time::sleep(tick)),
            waker: None,
            // Waiting for the first head from the start.
            idle: Some((0, Instant::now())),
            born: Instant::now(),
        }
    }

    /// Follows the connection's first bytes, then an HTTP/2 connection's frames.
    fn follow(&mut self, data: &[u8]) {
        let matched = match &mut self.start {
            Start::Sniffing(matched) => *matched,
            Start::Http2(frames) => return frames.feed(data),
            Start::Http1 => return,
        };
        let want = &crate::H2_PREFACE[matched..];
        let n = want.len().min(data.len());
        self.start = match want[..n] == data[..n] {
            false => Start::Http1,
            true if matched + n == crate::H2_PREFACE.len() => {
                let mut frames = Frames::default();
                frames.feed(&data[n..]);
                Start::Http2(frames)
            }
            true => Start::Sniffing(matched + n),
        };
    }

    /// How long the connection may go with no request in service, having served `served`.
    fn idle_limit(&self, served: u64) -> Duration {
        match self.start {
            Start::Http2(_) if served > 0 => self.timeouts.idle,
            _ => self.timeouts.header_read.min(self.timeouts.idle),
        }
    }

    /// Whether the connection has waited too long for a request, or for the rest of an HTTP/2
    /// header block. Ready to wake the task at the next tick otherwise.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
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
            let now = Instant::now();
            self.idle = match (self.exchanges.idle(), self.idle) {
                (Some(served), Some((seen, since))) if served == seen => Some((served, since)),
                // Idle since some time after the last tick.
                (Some(served), _) => Some((served, now)),
                (None, _) => None,
            };
            // Past its age, an HTTP/1 connection is closed by its next answer (closing it between
            // requests would race the client's next one); an HTTP/2 one, which has no such
            // answer, as soon as nothing is in service.
            let aged = now.duration_since(self.born) >= self.timeouts.max_age;
            let http2 = matches!(self.start, Start::Http2(_));
            if aged && !http2 {
                self.exchanges.aged.store(true, Ordering::Relaxed);
            }
            if let Some((served, since)) = self.idle {
                if (aged && http2) || now.duration_since(since) >= self.idle_limit(served) {
                    return true;
                }
            }
            if let Start::Http2(Frames {
                open_since: Some(since),
                ..
            }) = self.start
            {
                if now.duration_since(since) >= self.timeouts.header_read {
                    return true;
                }
            }
            let next = now + self.tick;
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
                if !matches!(this.start, Start::Http1) {
                    this.follow(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header-read or idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

writes_pass_through!(HeadTimeout);

#[cfg(test)]
mod tests;
