//! Secrets (app secret, access token, admin token): redacted in `Debug`, never `Display`ed, and,
//! when they come from a file, re-read while the gateway runs so rotation needs no restart.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::HeaderValue;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};

/// A secret string that is also a valid header value. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Held>);

struct Held {
    value: Box<str>,
    /// Computed once: a cache key binds pages to the credential through this, per request.
    sha256: [u8; 32],
    /// A header value made from the secret on first use (token mode's `Authorization`).
    header: OnceLock<Option<HeaderValue>>,
}

/// Two secrets are equal when their values are, whatever each has made already.
impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.value == other.value
    }
}

impl Eq for Held {}

#[derive(Debug, thiserror::Error)]
#[error("must be visible ASCII without control characters")]
pub struct InvalidSecret;

impl Secret {
    pub fn new(value: &str) -> Result<Secret, InvalidSecret> {
        if value.is_empty() || HeaderValue::from_str(value).is_err() || !value.is_ascii() {
            return Err(InvalidSecret);
        }
        Ok(Secret(Arc::new(Held {
            value: value.into(),
            sha256: Sha256::digest(value.as_bytes()).into(),
            header: OnceLock::new(),
        })))
    }

    /// A header value made from the secret by `make` on first use and kept with it, so that
    /// every request does not make it again; a rotated secret is a new `Secret`, with its own.
    pub fn header_value(
        &self,
        make: impl FnOnce(&str) -> Option<HeaderValue>,
    ) -> Option<HeaderValue> {
        self.0.header.get_or_init(|| make(&self.0.value)).clone()
    }

    /// The secret itself: call only where it is used (signing, a header), never for logging.
    pub fn expose(&self) -> &str {
        &self.0.value
    }

    /// The secret's SHA-256, computed when it was read.
    pub fn sha256(&self) -> [u8; 32] {
        self.0.sha256
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The current value of a secret that may be rotated underneath us.
#[derive(Debug, Clone)]
pub struct SecretCell(Arc<RwLock<Secret>>);

impl SecretCell {
    pub fn fixed(secret: Secret) -> SecretCell {
        SecretCell(Arc::new(RwLock::new(secret)))
    }

    pub fn get(&self) -> Secret {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, secret: Secret) {
        match self.0.write() {
            Ok(mut guard) => *guard = secret,
            Err(poisoned) => *poisoned.into_inner() = secret,
        }
    }

    /// Reads the file now (failing, with an error naming `key`, if it holds no usable secret),
    /// then re-reads it every `interval` in a background task. A read that fails or finds the file
    /// empty (a rotation half done) keeps the previous value, so requests in flight never see a
    /// missing secret. A file that stays unreadable is one condition: logged when it starts and
    /// when it ends, and `unreadable` is raised meanwhile.
    pub async fn watch_file(
        key: &'static str,
        path: PathBuf,
        interval: Duration,
        unreadable: Gauge,
    ) -> Result<SecretCell, String> {
        let first = read_file(&path).await.map_err(|e| format!("{key}: {e}"))?;
        let cell = SecretCell::fixed(first);
        let weak = Arc::downgrade(&cell.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    // Replaced by a reload: this watcher's condition ends with it.
                    if failing {
                        unreadable.dec();
                    }
                    return;
                };
                let cell = SecretCell(inner);
                match read_file(&path).await {
                    Ok(secret) => {
                        if std::mem::take(&mut failing) {
                            unreadable.dec();
                            tracing::info!(key, path = %path.display(), "secret file readable again");
                        }
                        if secret != cell.get() {
                            cell.set(secret);
                            tracing::info!(key, path = %path.display(), "secret file changed; using the new value");
                        }
                    }
                    Err(reason) if !failing => {
                        failing = true;
                        unreadable.inc();
                        tracing::warn!(key, path = %path.display(), %reason, "secret file unreadable; keeping the previous value until it can be read again");
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(cell)
    }
}

/// A secret file's secret, read as the gateway reads it: trimmed and checked, an error naming the
/// file (never the value).
pub async fn read_file(path: &std::path::Path) -> Result<Secret, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Secret::new(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("s3cr3t-token").unwrap_or_else(|_| unreachable!());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let cell = SecretCell::fixed(secret);
        assert!(!format!("{cell:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_header_value_is_made_once_per_secret() {
        let secret = Secret::new("t0k3n").unwrap_or_else(|_| unreachable!());
        let made = std::cell::Cell::new(0);
        let make = |value: &str| {
            made.set(made.get() + 1);
            HeaderValue::from_str(&format!("Bearer {value}")).ok()
        };
        assert_eq!(
            secret
                .header_value(make)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"Bearer t0k3n"[..])
        );
        assert_eq!(
            secret
                .clone()
                .header_value(make)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"Bearer t0k3n"[..])
        );
        assert_eq!(made.get(), 1);
        // Equality is the value's: a secret that has made its header equals a fresh read of it.
        assert!(secret == Secret::new("t0k3n").unwrap_or_else(|_| unreachable!()));
        let rotated = Secret::new("n3w").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            rotated
                .header_value(make)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(&b"Bearer n3w"[..])
        );
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn rejects_values_that_cannot_be_header_values() {
        assert!(Secret::new("").is_err());
        assert!(Secret::new("a\nb").is_err());
        assert!(Secret::new("tök").is_err());
        assert!(Secret::new("Bearer abc").is_ok());
    }
}
