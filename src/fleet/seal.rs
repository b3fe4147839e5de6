//! The integrity tag on every page the fleet stores: an HMAC-SHA256, keyed by the fleet key,
//! over the Redis key and the value. A page another Redis client wrote, altered or moved to
//! another key does not open.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use bytes::Bytes;

const TAG: usize = 32;

pub struct Sealer {
    mac: Hmac<Sha256>,
}

impl Sealer {
    /// `None` never happens in practice: HMAC takes a key of any length.
    pub fn new(key: &[u8]) -> Option<Sealer> {
        let mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        Some(Sealer { mac })
    }

    fn tag(&self, name: &str, value: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(value);
        mac
    }

    /// The tag, then the value.
    pub fn seal(&self, name: &str, value: &[u8]) -> Vec<u8> {
        let tag = self.tag(name, value).finalize().into_bytes();
        let mut sealed = Vec::with_capacity(TAG + value.len());
        sealed.extend_from_slice(&tag);
        sealed.extend_from_slice(value);
        sealed
    }

    /// The value, when its tag holds for this key (compared in constant time).
    pub fn open(&self, name: &str, sealed: Vec<u8>) -> Option<Bytes> {
        if sealed.len() < TAG {
            return None;
        }
        let (tag, value) = sealed.split_at(TAG);
        self.tag(name, value).verify_slice(tag).ok()?;
        Some(Bytes::from(sealed).slice(TAG..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_untouched_page_under_its_own_key_opens() {
        let sealer = Sealer::new(b"0123456789abcdef").unwrap_or_else(|| unreachable!());
        let sealed = sealer.seal("kg:page:01", b"page");
        assert_eq!(
            sealer.open("kg:page:01", sealed.clone()).as_deref(),
            Some(&b"page"[..])
        );
        assert!(sealer.open("kg:page:02", sealed.clone()).is_none());
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(sealer.open("kg:page:01", altered).is_none());
        let other = Sealer::new(b"another fleet key").unwrap_or_else(|| unreachable!());
        assert!(other.open("kg:page:01", sealed).is_none());
        assert!(sealer.open("kg:page:01", vec![1, 2]).is_none());
    }
}
