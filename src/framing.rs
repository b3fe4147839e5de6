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
//! anything it does not follow (HTTP/2, a head hyper will refuse anyway) it stops
//! reading along and costs nothing.

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

/// Where the reader is in a chunked body (RFC 9112 section 7.1), strictly: anything unexpected
/// turns the guard off rather than risk disagreeing with hyper about where the body ends.
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
    /// In a chunk extension, up to its line's end.
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
    /// In the trailer section: at a line's start, or inside a line.
    TrailerStart,
    TrailerLine,
    /// The `\n` of the empty line that ends the body.
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
                State::Chunked(chunk) => self.chunked(chunk, data),
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
                    self.buffer(data);
                    data.len()
                }
                Parsed::Refused => self.off(data.len()),
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
                false => self.off(data.len()),
            };
        }
        let partial = std::mem::take(&mut self.partial);
        match parse(&partial) {
            Parsed::Complete(len, framing_of) => {
                self.framed(framing_of, framing);
                len.saturating_sub(before).min(take)
            }
            Parsed::Partial if take == data.len() => {
                self.partial = partial;
                take
            }
            Parsed::Partial | Parsed::Refused => self.off(data.len()),
        }
    }

    fn buffer(&mut self, data: &[u8]) {
        match self.partial.len() + data.len() > self.max_head {
            true => drop(self.off(0)),
            false => self.partial.extend_from_slice(data),
        }
    }

    fn off(&mut self, used: usize) -> usize {
        self.state = State::Off;
        self.partial = Vec::new();
        used
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
    fn chunked(&mut self, mut chunk: Chunk, data: &[u8]) -> usize {
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
                (Chunk::SizeLf { size: 0 }, b'\n') => Some(Chunk::TrailerStart),
                (Chunk::SizeLf { size }, b'\n') => Some(Chunk::Data(size)),
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Size {
                    size: 0,
                    digits: false,
                }),
                (Chunk::TrailerStart, b'\r') => Some(Chunk::EndLf),
                (Chunk::TrailerStart | Chunk::TrailerLine, b'\n') => Some(Chunk::TrailerStart),
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Some(Chunk::TrailerLine),
                (Chunk::EndLf, b'\n') => {
                    self.state = State::Head;
                    return used;
                }
                _ => None,
            };
            match next {
                Some(next) => chunk = next,
                None => return self.off(used),
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
    /// Not a head hyper will accept (or HTTP/2's preface): hyper decides, the guard stops.
    Refused,
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
    fn stops_reading_along_where_hyper_decides() {
        let cases = [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nbad header\r\n\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\n",
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        ];
        for case in cases {
            // Nothing after these is read, so nothing after them can be flagged.
            let stream = [
                case,
                "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            ];
            let (flagged, state, _) = scan(stream.concat().as_bytes(), 3);
            assert_eq!((flagged, state), (None, State::Off), "{case:?}");
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

    #[test]
    fn a_head_larger_than_the_bound_turns_it_off() {
        let big = format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100 * 1024));
        assert_eq!(scan(big.as_bytes(), 1000).1, State::Off);
    }
}
