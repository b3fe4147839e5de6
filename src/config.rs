//! Configuration: TOML file, then `KOODRIVE_GATEWAY__SECTION__KEY` environment overrides, then
//! validation into [`Config`], where every duration, size, address and URL is parsed once.
//! Errors name the offending key.

mod keys;
pub mod memory;
mod raw;
/// Also reachable here for the normalization rules' serde helpers.
pub(crate) use crate::units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

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

/// The process environment's overrides: the `KOODRIVE_GATEWAY__` variables. Others are not read
/// at all, so one that is not UTF-8 (a locale, a path) cannot stop the gateway; one of ours that
/// is not is an error naming it.
pub fn overrides() -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "the value is not UTF-8".into(),
        })?;
        ours.push((name.to_owned(), value));
    }
    Ok(ours)
}

/// Variables the process has that look meant for the gateway but that it does not read
/// (`KOODRIVE_GATEWAY_CACHE_TTL`, one underscore after the prefix), each as a warning that says
/// so and, when one would match a key, names the variable that would set it.
pub fn unread_variables() -> Vec<String> {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    unread(names, &keys())
}

/// The variable the gateway reads as `KOODRIVE_GATEWAY_CONFIG` (the config file's path).
const CONFIG_VAR: &str = "KOODRIVE_GATEWAY_CONFIG";

fn unread(names: impl Iterator<Item = String>, keys: &[String]) -> Vec<String> {
    let single = ENV_PREFIX.trim_end_matches('_');
    let mut unread: Vec<String> = names
        .filter(|name| {
            name.starts_with(&format!("{single}_"))
                && !name.starts_with(ENV_PREFIX)
                && name != CONFIG_VAR
        })
        .map(|name| {
            let hint = match suggestion(&name, keys) {
                Some(var) => format!("; did you mean {var}?"),
                None => format!("; overrides are {ENV_PREFIX}SECTION__KEY"),
            };
            format!("{name} is not read (not a config override){hint}")
        })
        .collect();
    unread.sort();
    unread
}

/// The override variable of the key a misspelt variable seems meant for: the same words after
/// the prefix, whatever the underscores between them.
fn suggestion(name: &str, keys: &[String]) -> Option<String> {
    let single = ENV_PREFIX.trim_end_matches('_');
    let words = |text: &str| -> String {
        text.split(['_', '.'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("_")
            .to_ascii_lowercase()
    };
    let wanted = words(name.strip_prefix(single)?);
    keys.iter().find(|key| words(key) == wanted).map(|key| {
        format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        )
    })
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

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = ServerConfig {
            listen: parse_addr("server.listen", &raw.server.listen)?,
            admin_listen: parse_addr("server.admin_listen", &raw.server.admin_listen)?,
            shutdown_grace: bounded("server.shutdown_grace", raw.server.shutdown_grace)?,
            max_in_flight: positive("server.max_in_flight", raw.server.max_in_flight)?,
            header_read_timeout: nonzero(
                "server.header_read_timeout",
                raw.server.header_read_timeout,
            )?,
            max_header_bytes: usize::try_from(raw.server.max_header_bytes.as_u64())
                .ok()
                .filter(|n| (8 * 1024..=16 * 1024 * 1024).contains(n))
                .ok_or_else(|| {
                    invalid("server.max_header_bytes", "must be between 8KiB and 16MiB")
                })?,
            max_body: raw.server.max_body.as_u64(),
            idle_timeout: nonzero("server.idle_timeout", raw.server.idle_timeout)?,
            max_connections: positive("server.max_connections", raw.server.max_connections)?,
            max_buffered_bytes: raw.server.max_buffered_bytes.as_u64(),
            max_connection_duration: nonzero(
                "server.max_connection_duration",
                raw.server.max_connection_duration,
            )?,
        };
        if server.max_buffered_bytes < 64 * 1024 {
            return Err(invalid(
                "server.max_buffered_bytes",
                "must be at least 64KiB",
            ));
        }
        let url = raw
            .upstream
            .url
            .as_deref()
            .ok_or_else(|| invalid("upstream.url", "is required"))?;
        let (scheme, authority) = parse_upstream_url(url)?;
        let host = HeaderValue::from_str(authority_without_default_port(&scheme, &authority))
            .map_err(|e| invalid("upstream.url", e))?;
        let upstream = UpstreamConfig {
            scheme,
            authority,
            host,
            connect_timeout: nonzero("upstream.connect_timeout", raw.upstream.connect_timeout)?,
            timeout: nonzero("upstream.timeout", raw.upstream.timeout)?,
            max_signed_body: raw.upstream.max_signed_body.as_u64(),
            ca_file: raw.upstream.ca_file,
            pool_idle_timeout: bounded(
                "upstream.pool_idle_timeout",
                raw.upstream.pool_idle_timeout,
            )?,
            breaker_failures: raw.upstream.breaker_failures,
            breaker_cooldown: nonzero("upstream.breaker_cooldown", raw.upstream.breaker_cooldown)?,
        };
        let auth = auth_from_raw(raw.auth)?;
        let cache = CacheConfig {
            max_bytes: raw.cache.max_bytes.as_u64(),
            max_entry_bytes: raw.cache.max_entry_bytes.as_u64(),
            ttl: nonzero("cache.ttl", raw.cache.ttl)?,
            stale_while_revalidate: bounded(
                "cache.stale_while_revalidate",
                raw.cache.stale_while_revalidate,
            )?,
            stale_if_error: bounded("cache.stale_if_error", raw.cache.stale_if_error)?,
        };
        let normalize = raw
            .normalize
            .validate()
            .map_err(|e| invalid("normalize", e))?;
        let log = LogConfig {
            format: match raw.log.format.as_str() {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                other => {
                    return Err(invalid(
                        "log.format",
                        format!("\"{other}\": expected \"json\" or \"pretty\""),
                    ))
                }
            },
            level: raw.log.level,
        };
        if let Some(level) = &log.level {
            tracing_subscriber::EnvFilter::try_new(level).map_err(|e| invalid("log.level", e))?;
        }
        let telemetry = telemetry_from_raw(raw.telemetry)?;
        let admin = AdminConfig {
            token: nonempty_secret("admin.token", raw.admin.token)?,
            max_connections: positive("admin.max_connections", raw.admin.max_connections)?,
            idle_timeout: nonzero("admin.idle_timeout", raw.admin.idle_timeout)?,
            header_read_timeout: nonzero(
                "admin.header_read_timeout",
                raw.admin.header_read_timeout,
            )?,
        };
        if !server.admin_listen.ip().is_loopback() && admin.token.is_none() {
            return Err(invalid(
                "server.admin_listen",
                "a non-loopback admin listener needs admin.token (admin writes purge the cache)",
            ));
        }
        Ok(Config {
            server,
            upstream,
            auth,
            cache,
            normalize,
            admin,
            log,
            telemetry,
        })
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

fn telemetry_from_raw(raw: raw::RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let key = "telemetry.otlp_endpoint";
    let otlp_endpoint = match raw.otlp_endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => {
            if !cfg!(feature = "otlp") {
                return Err(invalid(
                    key,
                    "koodrive-gateway was built without the otlp feature (cargo build --features otlp)",
                ));
            }
            Some(parse_otlp_endpoint(url)?)
        }
    };
    let service_name = raw.service_name.trim();
    if service_name.is_empty() {
        return Err(invalid("telemetry.service_name", "is empty"));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name: service_name.to_owned(),
    })
}

/// An http(s) collector URL, possibly with a path prefix (`/v1/traces` is appended), no query.
fn parse_otlp_endpoint(url: &str) -> Result<Uri, ConfigError> {
    let key = "telemetry.otlp_endpoint";
    let uri: Uri = url
        .trim_end_matches('/')
        .parse()
        .map_err(|e| invalid(key, format!("\"{url}\" is not a URL ({e})")))?;
    if !uri
        .scheme()
        .is_some_and(|s| *s == Scheme::HTTP || *s == Scheme::HTTPS)
    {
        return Err(invalid(
            key,
            format!("\"{url}\": scheme must be http or https"),
        ));
    }
    if !uri.authority().is_some_and(|a| !a.host().is_empty()) {
        return Err(invalid(key, format!("\"{url}\" has no host")));
    }
    if uri.query().is_some() {
        return Err(invalid(key, format!("\"{url}\": a query is not supported")));
    }
    Ok(uri)
}

fn auth_from_raw(raw: raw::RawAuth) -> Result<AuthConfig, ConfigError> {
    let mode = match raw.mode.as_str() {
        "app_signature" => AuthMode::AppSignature,
        "token" => AuthMode::Token,
        other => {
            return Err(invalid(
                "auth.mode",
                format!("\"{other}\": expected \"app_signature\" or \"token\""),
            ))
        }
    };
    let user_id = raw
        .user_id
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("auth.user_id", "is required"))?;
    let user_id = HeaderValue::from_str(user_id.trim()).map_err(|e| invalid("auth.user_id", e))?;
    let (inline, file, key) = match mode {
        AuthMode::AppSignature => (raw.app_secret, raw.app_secret_file, "auth.app_secret"),
        AuthMode::Token => (raw.access_token, raw.access_token_file, "auth.access_token"),
    };
    let secret = match (nonempty_secret(key, inline)?, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key,
                format!("set either {key} or {key}_file, not both"),
            ))
        }
        (Some(secret), None) => SecretSource::Inline(secret),
        (None, Some(path)) => SecretSource::File(path),
        (None, None) => {
            return Err(invalid(
                key,
                format!("is required in {} mode (or {key}_file)", raw.mode),
            ))
        }
    };
    let app_id = raw.app_id.unwrap_or_default();
    if mode == AuthMode::AppSignature
        && (app_id.is_empty() || app_id.contains([',', ' ', '=']) || !app_id.is_ascii())
    {
        return Err(invalid(
            "auth.app_id",
            "is required in app_signature mode: ASCII without spaces, commas or '='",
        ));
    }
    if raw.file_poll_interval < Duration::from_millis(10) {
        return Err(invalid("auth.file_poll_interval", "must be at least 10ms"));
    }
    Ok(AuthConfig {
        mode,
        user_id,
        app_id,
        secret,
        file_poll_interval: bounded("auth.file_poll_interval", raw.file_poll_interval)?,
        language: HeaderValue::from_str(&raw.language).map_err(|e| invalid("auth.language", e))?,
        override_client: raw.override_client,
    })
}

fn nonempty_secret(key: &str, value: Option<String>) -> Result<Option<Secret>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(invalid(key, "is empty")),
        Some(v) => Secret::new(v.trim()).map(Some).map_err(|e| invalid(key, e)),
    }
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e| invalid(key, format!("\"{value}\" is not an IP:port address ({e})")))
}

fn positive(key: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(value)
}

fn nonzero(key: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    bounded(key, value)
}

/// The longest any duration key may be. More is "for ever" for every one of them, and a
/// deadline this far from a clock reading is far from overflowing it (which panics).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

fn bounded(key: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value > MAX_DURATION {
        return Err(invalid(key, "must be at most 366 days"));
    }
    Ok(value)
}

fn parse_upstream_url(url: &str) -> Result<(Scheme, Authority), ConfigError> {
    let key = "upstream.url";
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid(key, format!("\"{url}\" is not a URL ({e})")))?;
    let scheme = uri
        .scheme()
        .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
        .cloned()
        .ok_or_else(|| invalid(key, format!("\"{url}\": scheme must be http or https")))?;
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .cloned()
        .ok_or_else(|| invalid(key, format!("\"{url}\" has no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid(key, "must not carry user info"));
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return Err(invalid(
            key,
            format!("\"{url}\": a path or query is not supported, give the origin only"),
        ));
    }
    Ok((scheme, authority))
}

fn authority_without_default_port<'a>(scheme: &Scheme, authority: &'a Authority) -> &'a str {
    let default = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    match authority.port_u16() {
        Some(port) if port == default => authority.host(),
        _ => authority.as_str(),
    }
}

/// Writes `KOODRIVE_GATEWAY__SECTION__KEY=value` over the table as `section.key = "value"`, and
/// returns the `(key, variable)` pairs it set. A variable that names no key is an error naming
/// the variable (not the key it spells, which is in no file).
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let known = keys();
    let mut set = Vec::new();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let words: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        let key = words.join(".");
        if !known.contains(&key) {
            let mut message = format!("unknown key {key} (from the environment)");
            match suggestion(&name, &known) {
                Some(var) => message.push_str(&format!("; did you mean {var}?")),
                None => message.push_str(&format!("; overrides are {ENV_PREFIX}SECTION__KEY")),
            }
            return Err(ConfigError::Env { var: name, message });
        }
        let (last, sections) = words.split_last().unwrap_or((&key, &[]));
        let mut node = &mut *table;
        for section in sections {
            let entry = node
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: name.clone(),
                message: format!("{section} in the config file is not a section"),
            })?;
        }
        node.insert(last.clone(), toml::Value::String(value));
        set.push((key, name));
    }
    Ok(set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
