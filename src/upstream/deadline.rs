//! A body wrapper that fails once a deadline passes, so `upstream.timeout` bounds the whole
//! exchange and a stalled upstream body cannot hold a client (or a cache waiter) forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// The body was still streaming when the exchange's time (`upstream.timeout`) ran out.
#[derive(Debug, thiserror::Error)]
#[error("upstream body not finished within {0:?}")]
pub struct DeadlineElapsed(pub Duration);

pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<B> Deadline<B> {
    pub fn new(inner: B, deadline: Instant, timeout: Duration) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
        }
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
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(DeadlineElapsed(self.timeout))))),
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
