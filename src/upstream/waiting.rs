//! Whose fault a timeout is when a request body is still on its way. A body streamed from the
//! client makes the exchange wait on the client as well as on KooDrive: if the client stops
//! sending, `upstream.timeout` fires with KooDrive (rightly) still waiting for the rest, and that
//! must neither blame KooDrive (504) nor count against it in the circuit breaker.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::body::{Body, BoxError};

/// Whether the exchange is waiting on its request body: the body's last poll had nothing ready
/// and its end was not reached. A buffered body is always ready, and a body whose last frame
/// went out leaves this false, so only a client that stopped sending sets it (hyper polls the
/// body only while it can write, so a KooDrive that stopped reading leaves it false too).
pub struct Waiting(Arc<AtomicBool>);

impl Waiting {
    pub fn on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wraps a request body to tell [`Waiting`].
pub fn watch(body: Body) -> (Body, Waiting) {
    let waiting = Arc::new(AtomicBool::new(false));
    let watched = Watched {
        inner: body,
        waiting: Arc::clone(&waiting),
    };
    (Body::new(watched), Waiting(waiting))
}

struct Watched {
    inner: Body,
    waiting: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(poll.is_pending(), Ordering::Relaxed);
        poll
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
    use super::*;
    use http_body::Body as _;
    use std::collections::VecDeque;

    /// A client body that answers each poll as told: a chunk, or nothing yet (`None`); then ends.
    struct Client(VecDeque<Option<&'static [u8]>>);

    impl http_body::Body for Client {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.pop_front() {
                Some(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk))))),
                Some(None) => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    /// Polls once: whether the body had something (a frame or its end).
    async fn ready(body: &mut Body) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx).is_ready())).await
    }

    #[tokio::test]
    async fn waits_on_the_client_only_while_it_has_sent_nothing_more() {
        let client = Client(VecDeque::from([Some(&b"{"[..]), None, Some(&b"}"[..])]));
        let (mut body, waiting) = watch(crate::body::boxed(client));
        assert!(!waiting.on_client(), "not polled yet");
        assert!(
            ready(&mut body).await && !waiting.on_client(),
            "a chunk came"
        );
        assert!(
            !ready(&mut body).await && waiting.on_client(),
            "nothing more sent yet"
        );
        assert!(
            ready(&mut body).await && !waiting.on_client(),
            "the rest came"
        );
        assert!(ready(&mut body).await && !waiting.on_client(), "the end");
    }
}
