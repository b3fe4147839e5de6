//! The keys and messages the fleet writes to Redis. No user id and no credential appears in
//! one: a user is a tag (the first 16 bytes of a SHA-256 of their id), a page its cache key.

use sha2::{Digest, Sha256};

/// A user as the fleet names them.
pub type UserTag = [u8; 16];

/// A user's tag: the same on every sidecar.
pub fn user_tag(user_id: &[u8]) -> UserTag {
    let digest = Sha256::digest(user_id);
    let mut tag = [0; 16];
    tag.copy_from_slice(&digest[..16]);
    tag
}

/// The Pub/Sub hint of a new fleet epoch (the number follows).
pub const EPOCH_HINT: &str = "e ";

/// The Pub/Sub hint of a user's new generation: `g <tag> ` then the number.
pub fn user_hint(user: &UserTag) -> String {
    format!("g {} ", hex::encode(user))
}

/// The Pub/Sub hint of a fleet-wide cooldown after KooDrive throttled a sidecar: `c ` then its
/// length in milliseconds (a length, not a time: sidecars' clocks may differ).
pub fn cooldown_hint(length: std::time::Duration) -> String {
    format!("c {}", length.as_millis())
}

/// The Pub/Sub channel of the fleet's hints.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:invalidations")
}

/// A hint as heard: what moved, and to which number.
#[derive(Debug, PartialEq, Eq)]
pub enum Hint {
    Epoch(u64),
    User(UserTag, u64),
    /// A cooldown of this many milliseconds from now.
    Cooldown(u64),
}

pub fn parse_hint(text: &str) -> Option<Hint> {
    let mut parts = text.split(' ');
    match (parts.next()?, parts.next()?, parts.next()) {
        ("e", number, None) => Some(Hint::Epoch(number.parse().ok()?)),
        ("c", millis, None) => Some(Hint::Cooldown(millis.parse().ok()?)),
        ("g", tag, Some(number)) => {
            let mut user = [0; 16];
            hex::decode_to_slice(tag, &mut user).ok()?;
            Some(Hint::User(user, number.parse().ok()?))
        }
        _ => None,
    }
}

pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// In braces: a Redis Cluster hash tag, so that a user's keys share a slot.
    pub fn generation(&self, user: &UserTag) -> String {
        format!("{}:{{u:{}}}:gen", self.prefix, hex::encode(user))
    }

    pub fn page(&self, key: &[u8; 32]) -> String {
        format!("{}:page:{}", self.prefix, hex::encode(key))
    }

    pub fn lock(&self, key: &[u8; 32]) -> String {
        format!("{}:lock:{}", self.prefix, hex::encode(key))
    }

    pub fn channel(&self) -> String {
        channel(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_read_back_as_sent() {
        let user = user_tag(b"ada");
        let sent = format!("{}{}", user_hint(&user), 1_700_000_000_000_001u64);
        assert_eq!(
            parse_hint(&sent),
            Some(Hint::User(user, 1_700_000_000_000_001))
        );
        assert_eq!(parse_hint("e 42"), Some(Hint::Epoch(42)));
        let cooldown = cooldown_hint(std::time::Duration::from_secs(3));
        assert_eq!(parse_hint(&cooldown), Some(Hint::Cooldown(3000)));
        for junk in [
            "", "e", "e x", "g zz 1", "g 00 1", "x 1 2", "e 1 2", "c", "c 1 2", "c x",
        ] {
            assert_eq!(parse_hint(junk), None, "{junk}");
        }
    }

    #[test]
    fn keys_hold_no_user_id() {
        let names = Names::new("kg");
        let key = names.generation(&user_tag(b"user-4711"));
        assert!(key.starts_with("kg:{u:") && !key.contains("4711"), "{key}");
    }
}
