//! The requests of one connection as hyper hands them to the service and finishes with their
//! answers: two counters the connection's timeout reads.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONNECTION;
use http::{HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};

/// The requests of one client connection: handed to the service, and answered.
#[derive(Debug, Default)]
pub struct Exchanges {
    served: AtomicU64,
    answered: AtomicU64,
    /// An HTTP/1 connection past its `max_age`: its answers close it.
    pub(super) aged: AtomicBool,
}

impl Exchanges {
    /// A request is handed to the service: the connection is busy until the answer made with
    /// the returned [`Answer`] is done with (or the answer is dropped unmade).
    pub fn serve(self: &Arc<Self>) -> Answer {
        self.served.fetch_add(1, Ordering::Relaxed);
        Answer(Arc::clone(self))
    }

    /// The requests served so far, when every one of them has been answered.
    pub(super) fn idle(&self) -> Option<u64> {
        let served = self.served.load(Ordering::Relaxed);
        (self.answered.load(Ordering::Relaxed) == served).then_some(served)
    }
}

/// One request in service; counted as answered when dropped.
pub struct Answer(Arc<Exchanges>);

impl Answer {
    /// The response to the request, counted as answered once hyper is done with its body.
    pub fn with<B>(self, mut response: Response<B>) -> Response<Answered<B>> {
        if self.0.aged.load(Ordering::Relaxed) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
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
