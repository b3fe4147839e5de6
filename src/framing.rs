//! Ambiguous request framing, caught before hyper resolves it.
//!
//! hyper's HTTP/1 parser settles a request with both `Content-Length` and `Transfer-Encoding` as
//! RFC 9112 section 6.3 says (chunked wins, the length is dropped) and merges repeated identical
//! lengths, so the service never learns that the client sent them. A proxy should refuse such a
//! request instead (nginx, Envoy and Varnish all do): the two framings are how request smuggling
//! works, and an upstream could pick the other one.
//!
//! [`Guarded`] wraps a client connection and reads along as bytes pass to hyper, unchanged: it
//! finds each request head (with httparse, as hyper does), follows the body's framing to the next
//! head, and flags the first head whose framing is ambiguous. The service asks [`Framing`], in
//! request order, whether the request it got is the flagged one, and answers it with a 400. After
//! HTTP/2's preface it stops reading along and costs nothing. Anywhere else it cannot follow (a
//! head or a chunked body hyper refuses too, a head over the bound) it stops as well, but first
//! flags the next request: hyper reads no further on such a connection, and if it ever did, what
//! it read next would be a request the guard had not seen, so it is refused, not forwarded.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use scan::{Scan, State};

mod scan;

/// A request marked by the guard: why its framing is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous(pub &'static str);

/// What the guard of one connection found, shared with that connection's service.
#[derive(Debug)]
pub struct Framing {
    /// The index of the first request with ambiguous framing, or `u64::MAX`.
    flagged: AtomicU64,
    /// Requests the service has been handed so far.
    served: AtomicU64,
    reason: std::sync::OnceLock<&'static str>,
}

impl Default for Framing {
    fn default() -> Framing {
        Framing {
            flagged: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
            reason: std::sync::OnceLock::new(),
        }
    }
}

impl Framing {
    /// Called once per request, in the order requests arrive (HTTP/1 serves them one at a time):
    /// whether that request is the one whose framing was ambiguous. The guard has always read a
    /// head before hyper parses it, so the answer is never late.
    pub fn next(&self) -> Option<Ambiguous> {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        match self.flagged.load(Ordering::Acquire) == index {
            true => self.reason.get().copied().map(Ambiguous),
            false => None,
        }
    }

    fn flag(&self, index: u64, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.flagged.store(index, Ordering::Release);
    }
}

/// A client connection whose request framing is read along the way.
pub struct Guarded<S> {
    inner: S,
    framing: Arc<Framing>,
    scan: Scan,
}

impl<S> Guarded<S> {
    /// `max_head` is the largest head the guard buffers (hyper refuses larger ones itself).
    pub fn new(inner: S, framing: Arc<Framing>, max_head: usize) -> Guarded<S> {
        Guarded {
            inner,
            framing,
            scan: Scan {
                state: State::Head,
                heads: 0,
                partial: Vec::new(),
                max_head,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.scan.state != State::Off {
            this.scan.feed(&buf.filled()[before..], &this.framing);
        }
        Poll::Ready(Ok(()))
    }
}

writes_pass_through!(Guarded);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
