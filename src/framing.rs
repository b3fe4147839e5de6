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
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Most header lines a head may have for the guard to read it (hyper's own limit is 100).
const MAX_HEADERS: usize = 128;

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

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests, or inside a head.
    Head,
    /// This many body bytes to go (Content-Length).
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Not reading along any more.
    Off,
}

/// Where the reader is in a chunked body, state for state as hyper's decoder reads it
/// (`ChunkedState` in hyper's `proto/h1/decode.rs`), not as RFC 9112 section 7.1 writes it:
/// after the last chunk hyper is looser than the RFC, and reading the RFC there hid a request
/// from the guard. Where hyper fails the body, the guard stops and flags the next request.
/// (hyper also fails a body over its bounds on extension bytes, trailer bytes and trailer lines,
/// where the guard reads on: harmless, since hyper reads nothing more from that connection.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In the hex size; `digits` says whether one was seen.
    Size {
        size: u64,
        digits: bool,
    },
    /// Whitespace after the size (hyper allows it).
    SizeSpace {
        size: u64,
    },
    /// In a chunk extension, up to its line's `\r` (hyper refuses a bare `\n` in it).
    Extension {
        size: u64,
    },
    /// After the size line's `\r`.
    SizeLf {
        size: u64,
    },
    /// This many data bytes to go.
    Data(u64),
    /// The `\r\n` after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk's size line or a trailer line: a `\r` starts the `\r\n` that ends
    /// the body; any other byte, a bare `\n` too, starts a trailer line.
    EndCr,
    /// In a trailer line, which only `\r\n` ends: a bare `\n` is part of the line.
    Trailer,
    /// The `\n` after a trailer line's `\r`.
    TrailerLf,
    /// The `\n` of the `\r\n` that ends the body.
    EndLf,
}

struct Scan {
    state: State,
    /// Heads read so far: the index of the next one.
    heads: u64,
    /// A head split across reads, so far.
    partial: Vec<u8>,
    max_head: usize,
}

impl Scan {
    fn feed(&mut self, mut data: &[u8], framing: &Framing) {
        while !data.is_empty() {
            let used = match self.state {
                State::Off => return,
                State::Head => self.head(data, framing),
                State::Body(left) => {
                    let used = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.state = match left - used as u64 {
                        0 => State::Head,
                        left => State::Body(left),
                    };
                    used
                }
                State::Chunked(chunk) => self.chunked(chunk, data, framing),
            };
            data = &data[used..];
        }
    }

    /// Reads head bytes; returns how many of `data` belong to the head.
    fn head(&mut self, data: &[u8], framing: &Framing) -> usize {
        if self.partial.is_empty() {
            // The common case: the whole head arrived in one read, and is read in place.
            return match parse(data) {
                Parsed::Complete(len, framing_of) => {
                    self.framed(framing_of, framing);
                    len
                }
                Parsed::Partial => {
                    self.buffer(data, framing);
                    data.len()
                }
                Parsed::Refused => match self.preface(data) {
                    Preface::Whole => self.off(data.len()),
                    Preface::Part => {
                        self.buffer(data, framing);
                        data.len()
                    }
                    Preface::Not => self.lost(data.len(), framing),
                },
            };
        }
        // Only as much as a head may take: what follows it is body, not head.
        let before = self.partial.len();
        let take = data.len().min(self.max_head.saturating_sub(before));
        self.partial.extend_from_slice(&data[..take]);
        if !data[..take].contains(&b'\n') {
            // A head ends with a line feed: no need to look yet.
            return match take == data.len() {
                true => take,
                false => self.lost(data.len(), framing),
            };
        }
        let partial = std::mem::take(&mut self.partial);
        let parsed = parse(&partial);
        match parsed {
            Parsed::Complete(len, framing_of) => {
                self.framed(framing_of, framing);
                len.saturating_sub(before).min(take)
            }
            // Over the bound and still no head.
            _ if take < data.len() => self.lost(data.len(), framing),
            Parsed::Partial => {
                self.partial = partial;
                take
            }
            Parsed::Refused => match self.preface(&partial) {
                Preface::Whole => self.off(data.len()),
                Preface::Part => {
                    self.partial = partial;
                    take
                }
                Preface::Not => self.lost(data.len(), framing),
            },
        }
    }

    fn buffer(&mut self, data: &[u8], framing: &Framing) {
        match self.partial.len() + data.len() > self.max_head {
            true => drop(self.lost(0, framing)),
            false => self.partial.extend_from_slice(data),
        }
    }

    /// Whether a head httparse refuses is HTTP/2's preface, or may yet be: hyper-util's `auto`
    /// builder serves HTTP/2 only on the whole preface, as the connection's first bytes (and
    /// httparse refuses `PRI * HTTP/2` before the rest of it has come).
    fn preface(&self, head: &[u8]) -> Preface {
        match self.heads {
            0 if head.starts_with(crate::H2_PREFACE) => Preface::Whole,
            0 if crate::H2_PREFACE.starts_with(head) => Preface::Part,
            _ => Preface::Not,
        }
    }

    /// Stops reading along: after HTTP/2's preface, or a flagged head.
    fn off(&mut self, used: usize) -> usize {
        self.state = State::Off;
        self.partial = Vec::new();
        used
    }

    /// Stops reading along where the guard cannot follow the framing, and flags the request it
    /// was reading, or the next one. hyper refuses the same bytes and closes the connection, so
    /// the flag is never asked about; were hyper to read on, whatever it read next would be a
    /// request the guard had not seen, answered with a 400 and the connection closed.
    fn lost(&mut self, used: usize, framing: &Framing) -> usize {
        framing.flag(self.heads, "framing the gateway cannot follow");
        self.off(used)
    }

    /// Moves past a complete head: into its body, or flags it.
    fn framed(&mut self, head: Head, framing: &Framing) {
        let index = self.heads;
        self.heads += 1;
        self.state = match head {
            Head::Ambiguous(reason) => {
                // The connection closes after the 400: nothing after it needs reading.
                framing.flag(index, reason);
                State::Off
            }
            Head::Length(0) | Head::Empty => State::Head,
            Head::Length(len) => State::Body(len),
            Head::Chunked => State::Chunked(Chunk::Size {
                size: 0,
                digits: false,
            }),
        };
    }

    /// Reads chunked-body bytes; returns how many it used.
    fn chunked(&mut self, mut chunk: Chunk, data: &[u8], framing: &Framing) -> usize {
        let mut used = 0;
        while used < data.len() {
            if let Chunk::Data(left) = chunk {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - used);
                used += take;
                chunk = match left - take as u64 {
                    0 => Chunk::DataCr,
                    left => Chunk::Data(left),
                };
                continue;
            }
            let byte = data[used];
            used += 1;
            let next = match (chunk, byte) {
                (Chunk::Size { size, .. }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                    let size = size.checked_mul(16).and_then(|s| s.checked_add(digit));
                    size.map(|size| Chunk::Size { size, digits: true })
                }
                (Chunk::Size { size, digits: true } | Chunk::SizeSpace { size }, b' ' | b'\t') => {
                    Some(Chunk::SizeSpace { size })
                }
                (Chunk::Size { size, digits: true } | Chunk::SizeSpace { size }, b';') => {
                    Some(Chunk::Extension { size })
                }
                (Chunk::Size { size, digits: true } | Chunk::SizeSpace { size }, b'\r') => {
                    Some(Chunk::SizeLf { size })
                }
                (Chunk::Extension { size }, b'\r') => Some(Chunk::SizeLf { size }),
                (Chunk::Extension { .. }, b'\n') => None,
                (Chunk::Extension { size }, _) => Some(Chunk::Extension { size }),
                (Chunk::SizeLf { size: 0 }, b'\n') => Some(Chunk::EndCr),
                (Chunk::SizeLf { size }, b'\n') => Some(Chunk::Data(size)),
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Size {
                    size: 0,
                    digits: false,
                }),
                (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
                (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
                (Chunk::EndCr | Chunk::Trailer, _) => Some(Chunk::Trailer),
                (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
                (Chunk::EndLf, b'\n') => {
                    self.state = State::Head;
                    return used;
                }
                _ => None,
            };
            match next {
                Some(next) => chunk = next,
                None => return self.lost(used, framing),
            }
        }
        self.state = State::Chunked(chunk);
        used
    }
}

/// What a complete head says about the body after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    Empty,
    Length(u64),
    Chunked,
    Ambiguous(&'static str),
}

enum Parsed {
    Complete(usize, Head),
    Partial,
    /// Not a head hyper will accept (or HTTP/2's preface).
    Refused,
}

/// What a refused head is to HTTP/2's preface.
enum Preface {
    Whole,
    /// A beginning of it: more is needed to tell.
    Part,
    Not,
}

/// A head asking for an `Upgrade`, or a `CONNECT`, is framed like any other, as hyper frames it.
/// What may follow it is HTTP/1 all the same: the gateway drops `Upgrade` as hop-by-hop and never
/// answers 101, and it answers a `CONNECT` itself with a 405 (hyper would hand the connection to
/// an upgrade only after a 2xx).
fn parse(data: &[u8]) -> Parsed {
    // Left uninitialized for httparse to fill: zeroing 128 of them would cost more than parsing.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Refused,
    };
    let mut lengths = 0;
    let mut length = None;
    let mut transfer_encoding = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = Some(header.value);
        }
    }
    let head = match (transfer_encoding, lengths) {
        (Some(_), 1..) => Head::Ambiguous("Content-Length together with Transfer-Encoding"),
        (None, 2..) => Head::Ambiguous("more than one Content-Length"),
        (Some(value), _) if is_chunked(value) => Head::Chunked,
        // Not chunked last: hyper refuses it.
        (Some(_), _) => return Parsed::Refused,
        (None, 1) => match length {
            Some(length) => Head::Length(length),
            None => return Parsed::Refused, // "2, 2" or garbage: hyper decides
        },
        (None, _) => Head::Empty,
    };
    Parsed::Complete(len, head)
}

/// Whether `chunked` is the last transfer coding, as hyper reads it.
fn is_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; returns the flagged index and the final state.
    fn scan(stream: &[u8], step: usize) -> (Option<u64>, State, u64) {
        let framing = Framing::default();
        let mut scan = Scan {
            state: State::Head,
            heads: 0,
            partial: Vec::new(),
            max_head: 64 * 1024,
        };
        for piece in stream.chunks(step) {
            scan.feed(piece, &framing);
        }
        let flagged = framing.flagged.load(Ordering::Relaxed);
        (
            (flagged != u64::MAX).then_some(flagged),
            scan.state,
            scan.heads,
        )
    }

    const GET: &str = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    const POST: &str = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &str = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\n10 \t;x\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn follows_requests_in_any_split() {
        let stream = [GET, POST, CHUNKED, GET, "\r\n", GET, CHUNKED, POST].concat();
        for step in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(
                scan(stream.as_bytes(), step),
                (None, State::Head, 7),
                "step {step}"
            );
        }
    }

    #[test]
    fn flags_the_first_ambiguous_head() {
        let cases = [
            "POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST /a HTTP/1.1\r\ntransfer-encoding: identity\r\ncontent-length: 5\r\n\r\n",
            "POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
        ];
        for ambiguous in cases {
            // After two good requests, one with a body that looks like a head.
            let smuggled = format!(
                "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{ambiguous}",
                ambiguous.len()
            );
            let stream = [GET, &smuggled, ambiguous, GET].concat();
            for step in [1, 5, stream.len()] {
                let (flagged, state, _) = scan(stream.as_bytes(), step);
                assert_eq!(
                    (flagged, state),
                    (Some(2), State::Off),
                    "{ambiguous:?} {step}"
                );
            }
        }
    }

    #[test]
    fn upgrade_and_connect_requests_are_followed_like_any_other() {
        let firsts = [
            "GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        ];
        for first in firsts {
            let stream = [
                first,
                "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            ];
            for step in [1, 7, 4096] {
                let (flagged, state, _) = scan(stream.concat().as_bytes(), step);
                assert_eq!((flagged, state), (Some(1), State::Off), "{first:?} {step}");
            }
        }
    }

    #[test]
    fn stops_quietly_after_http2s_whole_preface_however_it_comes() {
        // Nothing after it is read, so nothing after it is flagged.
        let stream = [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        ]
        .concat();
        for step in 1..=stream.len() {
            assert_eq!(
                scan(stream.as_bytes(), step),
                (None, State::Off, 0),
                "step {step}"
            );
        }
    }

    #[test]
    fn flags_the_request_where_it_cannot_follow() {
        let heads = [
            // Not HTTP/2 after all: hyper-util's `auto` serves these as HTTP/1, which refuses them.
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r",
            "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
            "GET /a HTTP/1.1\r\nbad header\r\n\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n",
        ];
        // HTTP/2's preface is that only as a connection's first bytes.
        let later = format!("{GET}PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let chunked = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bodies = [
            "zz\r\n",
            "\r\n",
            "2\r\nab\n",
            "2\r\nab\r\r",
            "0\n",
            "0 1\r\n",
            "0;x\n",
            "0\r\r\n",
            "0\r\n\r\r\n",
            "0\r\nX: a\rb\r\n\r\n",
            "ffffffffffffffffff\r\n",
        ];
        // The head it cannot read, or the one after the body it cannot follow.
        let cases = heads
            .iter()
            .map(|head| (head.to_string(), 0))
            .chain([(later, 1)])
            .chain(
                bodies
                    .iter()
                    .map(|body| (format!("{GET}{chunked}{body}"), 2)),
            );
        for (case, index) in cases {
            let stream = [&case, "X", GET].concat();
            for step in [1, 3, stream.len()] {
                let (flagged, state, _) = scan(stream.as_bytes(), step);
                assert_eq!((flagged, state), (Some(index), State::Off), "{case:?}");
            }
        }
    }

    #[test]
    fn a_chunked_body_ends_where_hyper_ends_it() {
        // After the last chunk, hyper takes any byte but `\r` as the start of a trailer line,
        // and a trailer line runs to its `\r\n`, bare `\n`s and all. So after some of these
        // the GET that follows is read as trailers, not as a request.
        let cases = [
            ("0\r\n\r\n", 2),
            ("0 \t;x=\"y\"\r\nX-Trailer: 1\r\n\r\n", 2),
            ("0\r\n\n\r\n\r\n", 2),
            ("0\r\nX-Trailer: 1\n\r\n\r\n", 2),
            ("0\r\nX\nY\r\n\r\n", 2),
            ("0\r\n\n\r\n", 1),
            ("0\r\n\n\n\r\n", 1),
            ("0\r\nX-Trailer: 1\n\r\n", 1),
            ("0\r\nX-Trailer: 1\r\n\n\r\n", 1),
        ];
        let chunked = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n";
        for (end, heads) in cases {
            let stream = [chunked, end, GET].concat();
            for step in [1, 2, 5, stream.len()] {
                assert_eq!(
                    scan(stream.as_bytes(), step),
                    (None, State::Head, heads),
                    "{end:?} {step}"
                );
            }
        }
    }

    /// One well-formed request: no body, a sized body, or chunked, with arbitrary body bytes.
    fn request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let body = prop::collection::vec(any::<u8>(), 0..64);
        (0..3u8, prop::collection::vec(body, 0..4)).prop_map(|(kind, chunks)| {
            let mut out = b"POST /a HTTP/1.1\r\nHost: x\r\n".to_vec();
            let all = chunks.concat();
            match kind {
                0 => out.extend_from_slice(b"\r\n"),
                1 => {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", all.len()).as_bytes(),
                    );
                    out.extend_from_slice(&all);
                }
                _ => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
            }
            out
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        #[test]
        fn never_flags_well_formed_requests(
            requests in proptest::collection::vec(request(), 1..6),
            step in 1..200usize,
        ) {
            let count = requests.len() as u64;
            let stream = requests.concat();
            proptest::prop_assert_eq!(scan(&stream, step), (None, State::Head, count));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            step in 1..64usize,
        ) {
            let _ = scan(&bytes, step);
        }
    }

    /// A request with ambiguous framing, to be hidden where the guard might miss it.
    const HIDDEN: &str =
        "POST /hidden HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";

    /// Requests `/0`, `/1`, ...: sized, some with [`HIDDEN`] as their body, or chunked, with bare
    /// LFs and CRs, extensions and trailers where hyper might end the body other than the RFC
    /// does (mostly well-formed, so that hyper reads on).
    fn tangled() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        use proptest::sample::select;
        let line_end = || select(vec!["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"]);
        let extension = || select(vec!["", "", "", " ", ";x", "\t;y=\"z\"", ";x\n"]);
        let chunk = (
            prop::collection::vec(select(vec![b'a', b'a', b'\r', b'\n']), 1..4),
            extension(),
            line_end(),
        );
        let trailer = select(vec![
            "\r\n",
            "\n",
            "\n",
            "\r",
            "X-T: 1",
            "X-T: 1\r\n",
            HIDDEN,
        ]);
        let chunked = (
            prop::collection::vec(chunk, 0..3),
            extension(),
            line_end(),
            prop::collection::vec(trailer, 0..4),
            select(vec!["\r\n", "\r\n", "\r\n", "\n", ""]),
        );
        let request = prop_oneof![
            any::<bool>().prop_map(|hidden| {
                let body = if hidden { HIDDEN } else { "ab" };
                format!("Content-Length: {}\r\n\r\n{body}", body.len())
            }),
            chunked.prop_map(|(chunks, extension, size_end, trailers, end)| {
                let mut body = String::from("Transfer-Encoding: chunked\r\n\r\n");
                for (data, extension, data_end) in chunks {
                    let data = String::from_utf8(data).unwrap_or_default();
                    body += &format!("{:x}{extension}\r\n{data}{data_end}", data.len());
                }
                body += &format!("0{extension}{size_end}{}{end}", trailers.concat());
                body
            }),
        ];
        prop::collection::vec(request, 1..6).prop_map(|requests| {
            let mut stream = Vec::new();
            for (i, framing) in requests.iter().enumerate() {
                stream.extend_from_slice(format!("POST /{i} HTTP/1.1\r\nHost: x\r\n").as_bytes());
                stream.extend_from_slice(framing.as_bytes());
            }
            stream
        })
    }

    /// The requests hyper serves from `stream` through the guard, as the gateway serves them (a
    /// flagged one answered and the connection closed): each one's path, whether the guard
    /// flagged it, and whether hyper read its body whole.
    async fn served_by_hyper(stream: Vec<u8>) -> Vec<(String, bool, bool)> {
        use http_body_util::BodyExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (client, server) = tokio::io::duplex(64 * 1024);
        let framing = Arc::new(Framing::default());
        let server = Guarded::new(server, Arc::clone(&framing), 64 * 1024);
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&served);
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let flagged = framing.next().is_some();
                let record = Arc::clone(&record);
                async move {
                    let path = request.uri().path().to_owned();
                    let whole = request.into_body().collect().await.is_ok();
                    record.lock().unwrap().push((path, flagged, whole));
                    let mut response =
                        http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    if flagged {
                        let close = http::HeaderValue::from_static("close");
                        response
                            .headers_mut()
                            .insert(http::header::CONNECTION, close);
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        // Served on after the client's end of the stream (half-closed here, to end the stream).
        let connection = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let (mut answers, mut requests) = tokio::io::split(client);
        let send = async move {
            let _ = requests.write_all(&stream).await;
            let _ = requests.shutdown().await;
        };
        let receive = async move { answers.read_to_end(&mut Vec::new()).await };
        let all = async { tokio::join!(connection, send, receive) };
        let finished = tokio::time::timeout(std::time::Duration::from_secs(10), all).await;
        assert!(finished.is_ok(), "hyper never finished with the connection");
        let served = std::mem::take(&mut *served.lock().unwrap());
        served
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        /// hyper and the guard agree on where each request starts: hyper serves no request the
        /// guard has not seen (an ambiguous one it serves is the one the guard flagged), and as
        /// many as the guard saw.
        #[test]
        fn hyper_serves_the_requests_the_guard_reads(stream in tangled()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let served = runtime.block_on(served_by_hyper(stream.clone()));
            for (path, flagged, _) in &served {
                proptest::prop_assert_eq!(*flagged, path == "/hidden", "{:?}", served);
            }
            let (_, state, heads) = scan(&stream, 7);
            if state != State::Off && served.iter().all(|(_, _, whole)| *whole) {
                proptest::prop_assert_eq!(served.len() as u64, heads, "{:?}", served);
            }
        }
    }

    #[test]
    fn a_head_larger_than_the_bound_is_flagged() {
        let big = format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100 * 1024));
        assert_eq!(scan(big.as_bytes(), 1000), (Some(0), State::Off, 0));
    }
}
