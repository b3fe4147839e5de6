//! Configuration: TOML file, then `KOODRIVE_GATEWAY__SECTION__KEY` environment overrides, then
//! validation into [`Config`], where every duration, size, address and URL is parsed once.
//! Errors name the offending key.

mod env;
pub mod fleet;
mod keys;
pub mod memory;
mod raw;
pub mod routes;
mod validate;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use env::apply_env;
pub use env::{overrides, unread_variables};
pub use keys::keys;
pub use raw::RawConfig;

use crate::normalize::NormalizeConfig;
use crate::secret::Secret;

/// Prefix of environment overrides: `KOODRIVE_GATEWAY__AUTH__APP_SECRET` sets `auth.app_secret`.
pub const ENV_PREFIX: &str = "KOODRIVE_GATEWAY__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Where and why, never the offending line itself: it may hold a secret.
    #[error("config is not valid TOML: line {line}, column {column}: {message}")]
    Toml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A key whose value came from an environment override: the variable is what to fix.
    #[error("{key} (from {var}): {message}")]
    FromEnv {
        key: String,
        var: String,
        message: String,
    },
    /// An environment override that names no key, or cannot be read.
    #[error("{var}: {message}")]
    Env { var: String, message: String },
}

impl ConfigError {
    /// Names the environment variable when the key at fault was set by one.
    fn blame_env(self, from_env: &[(String, String)]) -> ConfigError {
        match self {
            ConfigError::Invalid { key, message } => {
                match from_env.iter().find(|(from, _)| *from == key) {
                    Some((_, var)) => ConfigError::FromEnv {
                        key,
                        var: var.clone(),
                        message,
                    },
                    None => ConfigError::Invalid { key, message },
                }
            }
            other => other,
        }
    }
}

/// A TOML syntax error as its position and reason. (`toml`'s own message quotes the line, and
/// a line with a typo in it may be the one holding a token or secret.)
fn toml_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..at).unwrap_or_default();
    ConfigError::Toml {
        line: before.matches('\n').count() + 1,
        column: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
        message: error.message().to_owned(),
    }
}

fn invalid(key: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.to_string(),
    }
}

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub auth: AuthConfig,
    pub cache: CacheConfig,
    pub normalize: NormalizeConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    /// Fleet mode's shared Redis tier; `None` when `[fleet]` names no Redis.
    pub fleet: Option<fleet::FleetConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub max_in_flight: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Request bodies streamed upstream (unsigned ones) are cut off beyond this: 413.
    pub max_body: u64,
    /// A connection with no request in service this long is closed (both protocols).
    pub idle_timeout: Duration,
    /// Open connections on the proxy listener; more are accepted and closed at once.
    pub max_connections: usize,
    /// The bytes all buffered bodies (signed request bodies, upstream bodies read to be
    /// normalized) may hold at once.
    pub max_buffered_bytes: u64,
    /// A connection older than this is closed after its answer in progress, or at once if it
    /// has none (nginx's `keepalive_time`, Envoy's `max_connection_duration`).
    pub max_connection_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The `Host` header sent upstream (and signed): the URL's authority.
    pub host: HeaderValue,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_signed_body: u64,
    pub ca_file: Option<PathBuf>,
    pub pool_idle_timeout: Duration,
    /// Consecutive failures that open the circuit breaker; 0 disables it.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// How long to back off after KooDrive throttles without a `Retry-After`; 0 turns the
    /// cooldown off.
    pub throttle_cooldown: Duration,
    /// The budget of calls to KooDrive; `None`: no budget.
    pub rate_limit: Option<RateLimitConfig>,
}

/// `[upstream.rate_limit]`: a token bucket of `burst` tokens refilled at `rps` a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub rps: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
    /// How long a request a client waits on may wait for budget before its 429.
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    AppSignature,
    Token,
}

/// Where a secret comes from: inline (config or environment) or a file that is watched.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub user_id: HeaderValue,
    pub app_id: String,
    /// The app secret (app_signature mode) or the access token (token mode).
    pub secret: SecretSource,
    pub file_poll_interval: Duration,
    pub language: HeaderValue,
    pub override_client: bool,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// The other cached routes (the task polls by default), matched in order.
    pub routes: routes::CacheRoutes,
}

impl CacheConfig {
    /// The task list's windows.
    pub fn windows(&self) -> routes::Windows {
        routes::Windows {
            ttl: self.ttl,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub token: Option<Secret>,
    /// The admin listener's own, smaller connection bounds.
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: Option<String>,
}

/// OpenTelemetry export; read once at start (a reload does not change it).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL; spans are posted to `<endpoint>/v1/traces`. `None`: no
    /// export (W3C `traceparent` is then passed upstream unchanged).
    pub otlp_endpoint: Option<Uri>,
    /// The `service.name` resource attribute of exported spans.
    pub service_name: String,
}

/// A config file's TOML table with the environment's overrides applied, before validation, and
/// which keys the environment set (so that an error in one names its variable).
#[derive(Debug, Clone)]
pub struct Layered {
    pub table: toml::Table,
    /// `(key, variable)` for each key an override set.
    from_env: Vec<(String, String)>,
}

impl Config {
    /// Reads the secret file the config names as the gateway reads it at start (the CA file is
    /// the upstream module's to check: `upstream::check_ca_file`), so that `--check-config` (a unit's `ExecStartPre`) fails on one it cannot use,
    /// naming its key, where the start would fail after binding its ports.
    pub async fn check_files(&self) -> Result<(), ConfigError> {
        if let SecretSource::File(path) = &self.auth.secret {
            crate::secret::read_file(path)
                .await
                .map_err(|e| invalid(self.auth.secret_key(), e))?;
        }
        if let Some(fleet) = &self.fleet {
            fleet::check_files(fleet).await?;
        }
        Ok(())
    }

    /// Reads a file and applies the process environment's overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_layered(Config::layered(path, overrides()?)?)
    }

    /// The file's TOML table after environment overrides, before validation (the demo edits it).
    pub fn layered(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::layered_str(&text, env)
    }

    /// TOML text with environment overrides applied, before validation.
    pub fn layered_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let from_env = apply_env(&mut table, env)?;
        Ok(Layered { table, from_env })
    }

    /// Validates a layered config; an error in a key the environment set names its variable.
    pub fn from_layered(layered: Layered) -> Result<Config, ConfigError> {
        Config::from_table(layered.table).map_err(|e| e.blame_env(&layered.from_env))
    }

    /// Parses TOML text with the given environment, for tests and `--check-config`.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::from_layered(Config::layered_str(text, env)?)
    }

    pub fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            // The message alone: the error's own display names the key again.
            .map_err(|e| invalid(&e.path().to_string(), e.inner().message()))?;
        Config::from_raw(raw)
    }
}

impl AuthConfig {
    /// The key the secret came from, for errors, logs and the `secret_file_unreadable` metric.
    pub fn secret_key(&self) -> &'static str {
        match (&self.secret, self.mode) {
            (SecretSource::File(_), AuthMode::AppSignature) => "auth.app_secret_file",
            (SecretSource::File(_), AuthMode::Token) => "auth.access_token_file",
            (SecretSource::Inline(_), AuthMode::AppSignature) => "auth.app_secret",
            (SecretSource::Inline(_), AuthMode::Token) => "auth.access_token",
        }
    }
}

/// The keys of the secret files the gateway watches, as the `key` label of
/// `koodrive_gateway_secret_file_unreadable`.
pub const SECRET_FILE_KEYS: [&str; 2] = ["auth.app_secret_file", "auth.access_token_file"];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
