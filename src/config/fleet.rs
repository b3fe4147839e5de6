//! The `[fleet]` section: the Redis that sidecars share for fleet mode. No section, or no
//! `redis_url`, means fleet mode is off and the gateway runs alone, as it always has.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::units;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    pub redis_url: Option<String>,
    pub redis_password_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub heartbeat: Duration,
}

impl Default for RawFleet {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_password_file: None,
            key_file: None,
            ca_file: None,
            key_prefix: "koodrive-gateway".into(),
            timeout: Duration::from_millis(25),
            heartbeat: Duration::from_millis(250),
        }
    }
}

/// Fleet mode's validated settings. Holds no secret: the password and the fleet key stay in
/// their files and are read by the fleet module (the password at every connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://` or `rediss://`, with an optional user name and never a password.
    pub redis_url: String,
    pub redis_password_file: Option<PathBuf>,
    pub key_file: PathBuf,
    /// PEM CA certificates that verify a `rediss://` server instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    /// The bound on each Redis call.
    pub timeout: Duration,
    /// How often the Pub/Sub connection is checked (and a fallen-back sidecar retries Redis).
    pub heartbeat: Duration,
}

/// The shortest fleet key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

pub(super) fn fleet_from_raw(raw: RawFleet) -> Result<Option<FleetConfig>, ConfigError> {
    let Some(url) = raw.redis_url.filter(|url| !url.trim().is_empty()) else {
        return Ok(None);
    };
    let url = url.trim().to_owned();
    check_url(&url)?;
    let Some(key_file) = raw.key_file else {
        return Err(invalid(
            "fleet.key_file",
            "fleet mode (fleet.redis_url) needs a fleet key file: pages in Redis are signed with it",
        ));
    };
    if raw.ca_file.is_some() && !url.starts_with("rediss://") {
        return Err(invalid(
            "fleet.ca_file",
            "verifies a TLS server: fleet.redis_url must be rediss://",
        ));
    }
    if raw.key_prefix.is_empty() || raw.key_prefix.contains(char::is_whitespace) {
        return Err(invalid(
            "fleet.key_prefix",
            "must be non-empty, without spaces",
        ));
    }
    for (key, value) in [
        ("fleet.timeout", raw.timeout),
        ("fleet.heartbeat", raw.heartbeat),
    ] {
        if value.is_zero() || value > Duration::from_secs(60) {
            return Err(invalid(key, "must be above 0 and at most 60s"));
        }
    }
    Ok(Some(FleetConfig {
        redis_url: url,
        redis_password_file: raw.redis_password_file,
        key_file,
        ca_file: raw.ca_file,
        key_prefix: raw.key_prefix,
        timeout: raw.timeout,
        heartbeat: raw.heartbeat,
    }))
}

/// Reads the fleet's files as the fleet reads them at start, so that `--check-config` fails on
/// one it cannot use. The key must be long enough to sign with; the files' contents are never
/// quoted.
pub(super) async fn check_files(fleet: &FleetConfig) -> Result<(), ConfigError> {
    let key = tokio::fs::read(&fleet.key_file)
        .await
        .map_err(|e| invalid("fleet.key_file", e))?;
    if key.trim_ascii().len() < MIN_KEY_BYTES {
        return Err(invalid(
            "fleet.key_file",
            format!("the fleet key must hold at least {MIN_KEY_BYTES} bytes"),
        ));
    }
    if let Some(path) = &fleet.redis_password_file {
        tokio::fs::read(path)
            .await
            .map_err(|e| invalid("fleet.redis_password_file", e))?;
    }
    if let Some(path) = &fleet.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| invalid("fleet.ca_file", e))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(invalid("fleet.ca_file", "holds no PEM certificate"));
        }
    }
    Ok(())
}

/// A URL the fleet can connect with: the scheme Redis clients use, a host, and no password (it
/// would be printed wherever the URL is; `fleet.redis_password_file` holds it instead).
fn check_url(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "fleet.redis_url";
    // The URL is never quoted back: it may hold a password.
    let parsed =
        redis::parse_redis_url(url).ok_or_else(|| invalid(KEY, "is not a valid Redis URL"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(invalid(KEY, "must be redis:// or rediss://"));
    }
    if parsed.host_str().map_or(true, str::is_empty) {
        return Err(invalid(KEY, "must name a host"));
    }
    if parsed.password().is_some() {
        return Err(invalid(
            KEY,
            "must not hold a password: put it in fleet.redis_password_file",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> RawFleet {
        RawFleet {
            redis_url: Some(url.into()),
            key_file: Some("/k".into()),
            ..RawFleet::default()
        }
    }

    #[test]
    fn no_url_is_fleet_mode_off() {
        assert_eq!(fleet_from_raw(RawFleet::default()).ok(), Some(None));
    }

    #[test]
    fn bad_settings_name_their_key_and_never_quote_a_password() {
        let cases = [
            (with_url("http://h:1"), "fleet.redis_url"),
            (with_url("redis://user:hunter2@h:1"), "fleet.redis_url"),
            (with_url("not a url"), "fleet.redis_url"),
            (
                RawFleet {
                    key_file: None,
                    ..with_url("redis://h:1")
                },
                "fleet.key_file",
            ),
            (
                RawFleet {
                    timeout: Duration::ZERO,
                    ..with_url("redis://h:1")
                },
                "fleet.timeout",
            ),
        ];
        for (raw, key) in cases {
            let message = fleet_from_raw(raw).err().map(|e| e.to_string());
            let message = message.unwrap_or_default();
            assert!(message.starts_with(key), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    /// Env overrides reach the section as for every other key, and `--check-config` reads the
    /// fleet key, naming its key when it cannot use it.
    #[tokio::test]
    async fn env_overrides_set_fleet_mode_and_check_files_reads_the_key() {
        let toml = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
                    [auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"";
        let key = std::env::temp_dir().join(format!("kg-fleet-unit-{}", std::process::id()));
        let env = [
            (
                "KOODRIVE_GATEWAY__FLEET__REDIS_URL".to_owned(),
                "redis://127.0.0.1:6390".to_owned(),
            ),
            (
                "KOODRIVE_GATEWAY__FLEET__KEY_FILE".to_owned(),
                key.display().to_string(),
            ),
            (
                "KOODRIVE_GATEWAY__FLEET__TIMEOUT".to_owned(),
                "40ms".to_owned(),
            ),
        ];
        let config = crate::config::Config::parse(toml, env).map_err(|e| e.to_string());
        let config = match config {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        };
        let fleet = config
            .fleet
            .clone()
            .unwrap_or_else(|| panic!("fleet mode is on"));
        assert_eq!(fleet.timeout, Duration::from_millis(40));
        assert_eq!(fleet.key_prefix, "koodrive-gateway");
        let missing = config.check_files().await.err().map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .unwrap_or_default()
                .starts_with("fleet.key_file"),
            "{missing:?}"
        );
        std::fs::write(&key, "short").unwrap_or_else(|e| panic!("{e}"));
        let short = config.check_files().await.err().map(|e| e.to_string());
        assert!(short.unwrap_or_default().contains("at least 16 bytes"));
        std::fs::write(&key, "a fleet key long enough").unwrap_or_else(|e| panic!("{e}"));
        assert!(config.check_files().await.is_ok());
        let _ = std::fs::remove_file(&key);
    }

    #[test]
    fn a_user_name_and_tls_are_accepted() {
        let fleet = fleet_from_raw(with_url("rediss://gateway@redis.internal:6380/2"));
        assert!(matches!(fleet, Ok(Some(f)) if f.redis_url.starts_with("rediss://gateway@")));
    }
}
