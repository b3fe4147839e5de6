//! Whether KooDrive has sent anything back on a connection since the gateway last wrote to it:
//! what tells "reset before any response byte" (safe to retry a GET: KooDrive never began to
//! answer) from "reset after part of the head" (it did). hyper's errors say neither: a connection
//! closed or reset mid-head is the same error as one closed before it. So each connection's IO
//! is wrapped, above TLS (a session ticket is not an answer), to keep one flag: set by a read
//! that brings bytes, cleared by a write. For a bodiless request the writes are its head, so
//! after them the flag is "any response byte yet". The pool keeps each connection's flag beside
//! its request sender.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's flag: something was read since the last write.
#[derive(Clone, Default)]
pub struct Heard(Arc<AtomicBool>);

impl Heard {
    /// Whether the connection has brought any byte since the request was written.
    pub fn anything(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connector whose connections keep a [`Heard`] flag. (hyper's IO traits hand a read a
/// cursor that cannot tell how much was filled; tokio's can, hence the [`TokioIo`] on each side.)
/// It also bounds the whole connect, TCP and TLS handshake together, by the duration it holds
/// (`upstream.connect_timeout`): the TCP connector bounds only its own part.
#[derive(Clone)]
pub struct Listening<C>(pub C, pub std::time::Duration);

pub type Io<T> = TokioIo<Watched<TokioIo<T>>>;

impl<C> tower_service::Service<Uri> for Listening<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: From<io::Error>,
{
    type Response = Io<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        let timeout = self.1;
        Box::pin(async move {
            let io = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(TokioIo::new(Watched {
                io: TokioIo::new(io),
                heard: Heard::default(),
            }))
        })
    }
}

/// A connection's IO that keeps its [`Heard`] flag.
pub struct Watched<T> {
    io: T,
    heard: Heard,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.0.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T> Watched<T> {
    /// The connection's flag, for the pool to keep beside its sender.
    pub fn heard(&self) -> Heard {
        self.heard.clone()
    }

    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if matches!(poll, Poll::Ready(Ok(n)) if *n > 0) {
            self.heard.0.store(false, Ordering::Relaxed);
        }
    }
}
