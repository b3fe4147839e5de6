//! HTTP/2 frame headers, followed to tell when a header block is open.

use tokio::time::Instant;

/// HTTP/2 frames as they are read (RFC 9113 section 4.1): only their 9-byte headers are looked
/// at, to tell when a header block (HEADERS, then CONTINUATION frames until one with
/// END_HEADERS) is open. hyper hands a request to the service only once its block is whole, so
/// the service cannot see one that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Frames {
    head: [u8; 9],
    /// Bytes of `head` read so far.
    have: usize,
    /// Bytes of the current frame's payload still to come.
    skip: usize,
    /// When the header block still open began.
    pub(super) open_since: Option<Instant>,
}

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

impl Frames {
    pub(super) fn feed(&mut self, mut data: &[u8]) {
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
