//! The config file as written: serde structs that mirror the TOML, with defaults and no checks.
//! `Config::from_raw` turns them into the validated form the gateway runs on.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};

use crate::normalize::RawNormalizeConfig;
use crate::units;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub normalize: RawNormalizeConfig,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub fleet: super::fleet::RawFleet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    #[serde(deserialize_with = "units::duration")]
    pub shutdown_grace: Duration,
    #[serde(deserialize_with = "lenient")]
    pub max_in_flight: usize,
    #[serde(deserialize_with = "units::duration")]
    pub header_read_timeout: Duration,
    #[serde(deserialize_with = "units::size")]
    pub max_header_bytes: ByteSize,
    #[serde(deserialize_with = "units::size")]
    pub max_body: ByteSize,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(deserialize_with = "lenient")]
    pub max_connections: usize,
    pub max_buffered_bytes: ByteSize,
    #[serde(with = "humantime_serde")]
    pub max_connection_duration: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            shutdown_grace: Duration::from_secs(10),
            max_in_flight: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: ByteSize::kib(64),
            max_body: ByteSize::mib(12),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_buffered_bytes: ByteSize::mib(48),
            max_connection_duration: Duration::from_secs(60 * 60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    #[serde(deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "units::size")]
    pub max_signed_body: ByteSize,
    pub ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "units::duration")]
    pub pool_idle_timeout: Duration,
    #[serde(deserialize_with = "lenient")]
    pub breaker_failures: u32,
    #[serde(deserialize_with = "units::duration")]
    pub breaker_cooldown: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub throttle_cooldown: Duration,
    pub rate_limit: RawRateLimit,
}

/// `[upstream.rate_limit]`: off while `rps` is absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    #[serde(deserialize_with = "lenient_option")]
    pub rps: Option<u32>,
    #[serde(deserialize_with = "lenient_option")]
    pub burst: Option<u32>,
    #[serde(deserialize_with = "units::duration")]
    pub max_wait: Duration,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            rps: None,
            burst: None,
            max_wait: Duration::from_millis(300),
        }
    }
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            max_signed_body: ByteSize::mib(12),
            ca_file: None,
            pool_idle_timeout: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
            throttle_cooldown: Duration::from_secs(5),
            rate_limit: RawRateLimit::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub mode: String,
    #[serde(deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub app_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub app_secret: Option<String>,
    pub app_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient_string")]
    pub access_token: Option<String>,
    pub access_token_file: Option<PathBuf>,
    #[serde(deserialize_with = "units::duration")]
    pub file_poll_interval: Duration,
    pub language: String,
    #[serde(deserialize_with = "lenient")]
    pub override_client: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            mode: "app_signature".into(),
            user_id: None,
            app_id: None,
            app_secret: None,
            app_secret_file: None,
            access_token: None,
            access_token_file: None,
            file_poll_interval: Duration::from_secs(1),
            language: "en-US".into(),
            override_client: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    #[serde(deserialize_with = "units::size")]
    pub max_bytes: ByteSize,
    #[serde(deserialize_with = "units::size")]
    pub max_entry_bytes: ByteSize,
    #[serde(deserialize_with = "units::duration")]
    pub ttl: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub stale_while_revalidate: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub stale_if_error: Duration,
    pub routes: Vec<super::routes::RawCacheRoute>,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize::mib(64),
            max_entry_bytes: ByteSize::mib(1),
            ttl: Duration::from_secs(3),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(60),
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    #[serde(deserialize_with = "lenient_string")]
    pub token: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            token: None,
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: Option<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "koodrive-gateway".into(),
        }
    }
}

/// Accepts the native TOML type or its text, since environment overrides are always text.
fn lenient<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Native(T),
        Text(String),
    }
    match Either::<T>::deserialize(de)? {
        Either::Native(v) => Ok(v),
        Either::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Accepts a string or a number (a user id written without quotes is still a string).
/// [`lenient`] for a key that may be absent.
fn lenient_option<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Native(T),
        Text(String),
    }
    match Option::<Either<T>>::deserialize(de)? {
        None => Ok(None),
        Some(Either::Native(v)) => Ok(Some(v)),
        Some(Either::Text(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Int(i64),
    }
    Ok(match Option::<Either>::deserialize(de)? {
        None => None,
        Some(Either::Text(s)) => Some(s),
        Some(Either::Int(i)) => Some(i.to_string()),
    })
}
