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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::header::CONNECTION;
use http::{HeaderValue, Response};
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
    /// An HTTP/1 connection past its `max_age`: its answers close it.
    aged: AtomicBool,
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

/// HTTP/2 frames as they are read (RFC 9113 section 4.1): only their 9-byte headers are looked
/// at, to tell when a header block (HEADERS, then CONTINUATION frames until one with
/// END_HEADERS) is open. hyper hands a request to the service only once its block is whole, so
/// the service cannot see one that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Frames {
    head: [u8; 9],
    /// Bytes of `head` read so far.
    have: usize,
    /// Bytes of the current frame's payload still to come.
    skip: usize,
    /// When the header block still open began.
    open_since: Option<Instant>,
}

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

impl Frames {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let n = (self.head.len() - self.have).min(data.len());
            let (piece, rest) = data.split_at(n);
            if let Some(slot) = self.head.get_mut(self.have..self.have + n) {
                slot.copy_from_slice(piece);
            }
            self.have += n;
            data = rest;
            if self.have < self.head.len() {
                return;
            }
            self.have = 0;
            let [l0, l1, l2, kind, flags, ..] = self.head;
            self.skip = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            let ends = flags & END_HEADERS != 0;
            match kind {
                HEADERS if !ends => self.open_since = Some(Instant::now()),
                HEADERS | CONTINUATION if ends => self.open_since = None,
                _ => {}
            }
        }
    }
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
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const TIMEOUT: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);
    const MAX_AGE: Duration = Duration::from_secs(3600);

    fn connection() -> (DuplexStream, HeadTimeout<DuplexStream>, Arc<Exchanges>) {
        let (client, server) = tokio::io::duplex(1024);
        let exchanges = Arc::new(Exchanges::default());
        let timeouts = Timeouts {
            header_read: TIMEOUT,
            idle: IDLE,
            max_age: MAX_AGE,
        };
        let server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
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

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// A frame's 9-byte header and a payload of `len` zeros.
    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![0, 0, 0, kind, flags, 0, 0, 0, 1];
        frame[..3].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes()[1..]);
        frame.resize(9 + len, 0);
        frame
    }

    /// Writes `data` in pieces of `piece` bytes, each read by the server.
    async fn send_in_pieces(
        client: &mut DuplexStream,
        server: &mut HeadTimeout<DuplexStream>,
        data: &[u8],
        piece: usize,
    ) {
        let mut buf = [0; 64];
        for piece in data.chunks(piece) {
            client.write_all(piece).await.unwrap();
            let mut got = 0;
            while got < piece.len() {
                got += server.read(&mut buf).await.unwrap();
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_waits_for_its_first_request_as_http1_does() {
        let (mut client, mut server, _) = connection();
        send_in_pieces(&mut client, &mut server, PREFACE, 2).await;
        let took = time_to_cut_off(&mut server).await;
        assert!(took <= TIMEOUT, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_served_http2_connection_is_cut_off_after_the_idle_timeout() {
        let (mut client, mut server, exchanges) = connection();
        send_in_pieces(&mut client, &mut server, PREFACE, 24).await;
        drop(exchanges.serve());
        assert!(stays_open(&mut server, IDLE - TIMEOUT).await);
        let took = time_to_cut_off(&mut server).await;
        assert!(took <= TIMEOUT + TIMEOUT / TICKS, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_http2_header_block_is_cut_off_after_the_header_timeout() {
        let (mut client, mut server, exchanges) = connection();
        // Another stream in service: the connection is not idle, the block is still cut off.
        let _busy = exchanges.serve();
        let mut data = PREFACE.to_vec();
        data.extend(frame(0x4, 0, 6)); // SETTINGS
        data.extend(frame(0x1, 0x1, 20)); // HEADERS, END_STREAM, no END_HEADERS
        data.extend(frame(0x9, 0, 7)); // CONTINUATION, no END_HEADERS
        send_in_pieces(&mut client, &mut server, &data, 5).await;
        let took = time_to_cut_off(&mut server).await;
        assert!(
            took >= TIMEOUT && took <= TIMEOUT + TIMEOUT / TICKS,
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_http2_header_block_is_not_cut_off() {
        let (mut client, mut server, exchanges) = connection();
        let _busy = exchanges.serve();
        let mut data = PREFACE.to_vec();
        data.extend(frame(0x1, 0, 20)); // HEADERS, no END_HEADERS
        data.extend(frame(0x9, 0x4, 7)); // CONTINUATION with END_HEADERS
        data.extend(frame(0x1, 0x5, 3)); // HEADERS with END_HEADERS at once
        data.extend(frame(0x0, 0, 40)); // DATA
        send_in_pieces(&mut client, &mut server, &data, 7).await;
        assert!(stays_open(&mut server, IDLE * 2).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_header_timeout_bounds_http1_keep_alive() {
        let (client, server) = tokio::io::duplex(1024);
        let _client = client;
        let exchanges = Arc::new(Exchanges::default());
        let short = Duration::from_secs(2);
        let timeouts = Timeouts {
            header_read: TIMEOUT,
            idle: short,
            max_age: MAX_AGE,
        };
        let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
        drop(exchanges.serve());
        let took = time_to_cut_off(&mut server).await;
        assert!(took <= short + short / TICKS, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_connection_closes_after_its_answer_in_progress() {
        let (_client, server) = tokio::io::duplex(1024);
        let exchanges = Arc::new(Exchanges::default());
        let max_age = Duration::from_secs(30);
        let timeouts = Timeouts {
            header_read: TIMEOUT,
            idle: IDLE,
            max_age,
        };
        let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
        let young = exchanges.serve().with(Response::new(()));
        assert!(young.headers().get(CONNECTION).is_none());
        drop(young);
        // A request in service keeps it open past its age...
        let answer = exchanges.serve();
        assert!(stays_open(&mut server, max_age + TIMEOUT).await);
        // ...and its answers now say it closes...
        let late = exchanges.serve().with(Response::new(()));
        assert_eq!(late.headers()[CONNECTION], "close");
        drop(late);
        // ...and with nothing in service it waits for a head no longer than before (the answer
        // saying `close` ends it; hyper closes the connection after that answer).
        drop(answer);
        let took = time_to_cut_off(&mut server).await;
        assert!(took <= TIMEOUT + TIMEOUT / TICKS, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_http2_connection_closes_once_nothing_is_in_service() {
        let (mut client, server) = tokio::io::duplex(1024);
        let exchanges = Arc::new(Exchanges::default());
        let max_age = Duration::from_secs(30);
        let timeouts = Timeouts {
            header_read: TIMEOUT,
            idle: IDLE,
            max_age,
        };
        let mut server = HeadTimeout::new(server, Arc::clone(&exchanges), timeouts);
        send_in_pieces(&mut client, &mut server, PREFACE, 24).await;
        let answer = exchanges.serve();
        assert!(stays_open(&mut server, max_age + TIMEOUT).await);
        drop(answer);
        let took = time_to_cut_off(&mut server).await;
        assert!(took <= TIMEOUT / TICKS, "{took:?}");
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
