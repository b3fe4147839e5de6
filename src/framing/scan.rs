//! The guard's reader: request heads (parsed with httparse, as hyper parses them), then each
//! body by its framing (a length, or chunks as hyper's decoder reads them), to the next head.

use std::mem::MaybeUninit;

use super::Framing;

/// Most header lines a head may have for the guard to read it (hyper's own limit is 100).
const MAX_HEADERS: usize = 128;

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
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
pub(super) enum Chunk {
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

pub(super) struct Scan {
    pub(super) state: State,
    /// Heads read so far: the index of the next one.
    pub(super) heads: u64,
    /// A head split across reads, so far.
    pub(super) partial: Vec<u8>,
    pub(super) max_head: usize,
}

impl Scan {
    pub(super) fn feed(&mut self, mut data: &[u8], framing: &Framing) {
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
