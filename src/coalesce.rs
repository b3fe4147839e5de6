//! Answers written together: a client connection that has just read a request yields once to the
//! runtime before its first write.
//!
//! A caller with many connections open (a client pool, a load balancer, a load generator) reads
//! them all from one event loop. When its answers arrive one at a time, a little apart, that loop
//! has gone back to sleep in between, and each answer wakes it again: on Linux the writer pays for
//! the wakeup (`sock_def_readable` -> `try_to_wake_up`, an IPI to the reader's CPU), a cost close
//! to the handler's own time for a cache hit.
//!
//! The runtime polls the connections it finds ready in one turn, one after the other. With this
//! wrapper each of them computes its answer, then steps to the back of the run queue; the writes
//! go out back to back at the end of the turn, and the reader wakes once for the lot (Netty's
//! `FlushConsolidationHandler` does the same for one connection's pipelined answers). The cost
//! is one extra poll of the connection's task per request, and an answer waits for the answers
//! computed in the same turn before it is written (bench/RESULTS.md, "Answers written together",
//! has what it measured).
//!
//! Only the first write after a read yields: a streamed body's later chunks, and writes no read
//! preceded, go straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client connection whose first write after each read waits for the rest of the turn.
pub struct Coalesced<S> {
    inner: S,
    /// Bytes were read since the last write: the next write yields once first.
    yield_first: bool,
}

impl<S> Coalesced<S> {
    pub fn new(inner: S) -> Coalesced<S> {
        Coalesced {
            inner,
            yield_first: false,
        }
    }

    /// Ready when the write may go out now; otherwise asks to be polled again after the
    /// connections already queued, and is pending.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.yield_first {
            return Poll::Ready(());
        }
        self.yield_first = false;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.yield_first = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_turn(cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_turn(cx));
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    /// Counts wakeups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A connection that has `incoming` to read and keeps what is written to it.
    struct Fake {
        incoming: Vec<u8>,
        written: Vec<u8>,
    }

    impl AsyncRead for Fake {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this.incoming.len().min(buf.remaining());
            buf.put_slice(&this.incoming[..n]);
            this.incoming.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Fake {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn read(conn: &mut Coalesced<Fake>, cx: &mut Context<'_>) -> usize {
        let mut space = [0u8; 64];
        let mut buf = ReadBuf::new(&mut space);
        assert!(matches!(
            Pin::new(conn).poll_read(cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        buf.filled().len()
    }

    fn write(conn: &mut Coalesced<Fake>, cx: &mut Context<'_>, data: &[u8]) -> Poll<usize> {
        match Pin::new(conn).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => Poll::Ready(n),
            Poll::Ready(Err(e)) => panic!("write failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }

    #[test]
    fn the_first_write_after_a_read_yields_once_and_the_rest_go_straight_through() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut conn = Coalesced::new(Fake {
            incoming: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            written: Vec::new(),
        });

        // Nothing read yet: a write goes out at once.
        assert_eq!(write(&mut conn, &mut cx, b"early"), Poll::Ready(5));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        // A request read: the answer's first write waits one turn, asking to be polled again.
        assert_eq!(read(&mut conn, &mut cx), 18);
        assert_eq!(write(&mut conn, &mut cx, b"head"), Poll::Pending);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(conn.inner.written, b"early");

        // Polled again, it goes out, and so do the writes after it.
        assert_eq!(write(&mut conn, &mut cx, b"head"), Poll::Ready(4));
        assert_eq!(write(&mut conn, &mut cx, b"body"), Poll::Ready(4));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(conn.inner.written, b"earlyheadbody");

        // A read that finds nothing (end of stream) does not make the next write wait.
        assert_eq!(read(&mut conn, &mut cx), 0);
        assert_eq!(write(&mut conn, &mut cx, b"bye"), Poll::Ready(3));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_vectored_write_yields_the_same_way() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut conn = Coalesced::new(Fake {
            incoming: b"x".to_vec(),
            written: Vec::new(),
        });
        assert_eq!(read(&mut conn, &mut cx), 1);
        let bufs = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        assert!(Pin::new(&mut conn)
            .poll_write_vectored(&mut cx, &bufs)
            .is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            Pin::new(&mut conn).poll_write_vectored(&mut cx, &bufs),
            Poll::Ready(Ok(2))
        ));
        assert_eq!(conn.inner.written, b"ab");
    }
}
