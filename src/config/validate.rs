//! Raw config -> validated [`Config`]: every duration, size, address and URL checked and parsed
//! once; each error names its key.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use super::raw::{self, RawConfig};
use super::{
    invalid, AdminConfig, AuthConfig, AuthMode, CacheConfig, Config, ConfigError, LogConfig,
    LogFormat, RateLimitConfig, SecretSource, ServerConfig, TelemetryConfig, UpstreamConfig,
};
use crate::secret::Secret;

impl Config {
    pub(super) fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = server_from_raw(raw.server)?;
        let upstream = upstream_from_raw(raw.upstream)?;
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
            routes: super::routes::routes_from_raw(raw.cache.routes, bounded)?,
        };
        let normalize = raw
            .normalize
            .validate()
            .map_err(|e| invalid("normalize", e))?;
        let log = log_from_raw(raw.log)?;
        let telemetry = telemetry_from_raw(raw.telemetry)?;
        let fleet = super::fleet::fleet_from_raw(raw.fleet)?;
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
            fleet,
        })
    }
}

fn server_from_raw(raw: raw::RawServer) -> Result<ServerConfig, ConfigError> {
    let server = ServerConfig {
        listen: parse_addr("server.listen", &raw.listen)?,
        admin_listen: parse_addr("server.admin_listen", &raw.admin_listen)?,
        shutdown_grace: bounded("server.shutdown_grace", raw.shutdown_grace)?,
        max_in_flight: positive("server.max_in_flight", raw.max_in_flight)?,
        header_read_timeout: nonzero("server.header_read_timeout", raw.header_read_timeout)?,
        max_header_bytes: usize::try_from(raw.max_header_bytes.as_u64())
            .ok()
            .filter(|n| (8 * 1024..=16 * 1024 * 1024).contains(n))
            .ok_or_else(|| invalid("server.max_header_bytes", "must be between 8KiB and 16MiB"))?,
        max_body: raw.max_body.as_u64(),
        idle_timeout: nonzero("server.idle_timeout", raw.idle_timeout)?,
        max_connections: positive("server.max_connections", raw.max_connections)?,
        max_buffered_bytes: raw.max_buffered_bytes.as_u64(),
        max_connection_duration: nonzero(
            "server.max_connection_duration",
            raw.max_connection_duration,
        )?,
    };
    if server.max_buffered_bytes < 64 * 1024 {
        return Err(invalid(
            "server.max_buffered_bytes",
            "must be at least 64KiB",
        ));
    }
    Ok(server)
}

fn upstream_from_raw(raw: raw::RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    let url = raw
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
        connect_timeout: nonzero("upstream.connect_timeout", raw.connect_timeout)?,
        timeout: nonzero("upstream.timeout", raw.timeout)?,
        max_signed_body: raw.max_signed_body.as_u64(),
        ca_file: raw.ca_file,
        pool_idle_timeout: bounded("upstream.pool_idle_timeout", raw.pool_idle_timeout)?,
        breaker_failures: raw.breaker_failures,
        breaker_cooldown: nonzero("upstream.breaker_cooldown", raw.breaker_cooldown)?,
        throttle_cooldown: bounded("upstream.throttle_cooldown", raw.throttle_cooldown)?,
        rate_limit: rate_limit_from_raw(raw.rate_limit)?,
    };
    Ok(upstream)
}

fn rate_limit_from_raw(raw: raw::RawRateLimit) -> Result<Option<RateLimitConfig>, ConfigError> {
    let nonzero_count = |key: &str, value: u32| {
        NonZeroU32::new(value).ok_or_else(|| invalid(key, "must be greater than zero"))
    };
    let Some(rps) = raw.rps else {
        if raw.burst.is_some() {
            return Err(invalid(
                "upstream.rate_limit.burst",
                "needs upstream.rate_limit.rps",
            ));
        }
        return Ok(None);
    };
    let rps = nonzero_count("upstream.rate_limit.rps", rps)?;
    let burst = match raw.burst {
        Some(burst) => nonzero_count("upstream.rate_limit.burst", burst)?,
        None => rps,
    };
    let max_wait = bounded("upstream.rate_limit.max_wait", raw.max_wait)?;
    Ok(Some(RateLimitConfig {
        rps,
        burst,
        max_wait,
    }))
}

fn log_from_raw(raw: raw::RawLog) -> Result<LogConfig, ConfigError> {
    let log = LogConfig {
        format: match raw.format.as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("\"{other}\": expected \"json\" or \"pretty\""),
                ))
            }
        },
        level: raw.level,
    };
    if let Some(level) = &log.level {
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| invalid("log.level", e))?;
    }
    Ok(log)
}

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
