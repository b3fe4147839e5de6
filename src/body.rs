//! The one body type that flows through the gateway, and small helpers to build it.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or buffered body, boxed so that every route returns the same type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A buffered body held in two pieces, sent as two frames (hyper gathers them into one write).
pub fn two_pieces(first: Bytes, second: Bytes) -> Body {
    if second.is_empty() {
        return full(first);
    }
    TwoPieces([Some(first), Some(second)]).boxed_unsync()
}

struct TwoPieces([Option<Bytes>; 2]);

impl http_body::Body for TwoPieces {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let next = self.get_mut().0.iter_mut().find_map(Option::take);
        Poll::Ready(next.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let len = self.0.iter().flatten().map(Bytes::len).sum::<usize>();
        http_body::SizeHint::with_exact(len as u64)
    }
}

/// A buffered body that keeps `guard` (a memory reservation) until hyper is done with it.
pub fn full_holding<G: Send + Unpin + 'static>(bytes: Bytes, guard: G) -> Body {
    Holding {
        body: Full::new(bytes),
        _guard: guard,
    }
    .boxed_unsync()
}

struct Holding<G> {
    body: Full<Bytes>,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Holding<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A client's request body failed while it streamed upstream: cut off, or over `limit`. The
/// marker lets the upstream client tell the client's fault from KooDrive's.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed")]
pub struct ClientBodyError {
    pub limit: u64,
    #[source]
    pub source: BoxError,
}

impl ClientBodyError {
    pub fn over_limit(&self) -> bool {
        self.source.is::<http_body_util::LengthLimitError>()
    }
}

/// A client's body streamed upstream, cut off at `limit` bytes; its errors are [`ClientBodyError`]s.
pub fn client_stream<B>(body: B, limit: u64) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(move |source| BoxError::from(ClientBodyError { limit, source }))
        .boxed_unsync()
}

/// `prefix` (already read) followed by the rest of a body still streaming.
pub fn prefixed(prefix: Bytes, rest: Body) -> Body {
    Prefixed {
        prefix: Some(prefix),
        rest,
    }
    .boxed_unsync()
}

struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}
