//! Process-wide tracing setup: JSON or pretty lines on stdout, level from `RUST_LOG` or
//! `log.level` (reloadable). Every event inside a request carries that request's span, and so
//! its `trace_id`. With the `otlp` feature and `telemetry.otlp_endpoint`, the same spans are
//! also exported over OTLP/HTTP, and W3C `traceparent` is honoured and propagated upstream.

mod json;
#[cfg(feature = "otlp")]
mod otlp;
mod writer;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// The access log's target: one event per request. Its lines are written in batches.
pub const ACCESS_TARGET: &str = "koodrive_gateway::access";

/// Changes the log level of a running process (SIGHUP reload); dropping it flushes the log.
pub struct LogHandle {
    level: Option<reload::Handle<EnvFilter, Registry>>,
    _flush: writer::Flush,
}

/// What `init` installed: the log-level handle and, with OTLP export, the exporter to flush on
/// exit.
pub struct Telemetry {
    pub log: LogHandle,
    #[cfg(feature = "otlp")]
    export: Option<otlp::Export>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot start the log writer thread")]
    Writer(#[source] std::io::Error),
    #[error("cannot set up TLS for the OTLP exporter")]
    Tls(#[source] crate::tls::TlsSetupError),
    #[cfg(feature = "otlp")]
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

fn filter(log: &LogConfig) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| {
            log.level
                .as_deref()
                .and_then(|l| EnvFilter::try_new(l).ok())
        })
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the process's subscriber: the level filter, the OTLP span exporter when built in
/// and configured, and the log lines. Fails only when the exporter cannot be built.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    #[cfg(feature = "otlp")]
    let export = telemetry
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| otlp::Export::new(endpoint, &telemetry.service_name))
        .transpose()?;
    #[cfg(not(feature = "otlp"))]
    let _ = telemetry;
    let (filter, handle) = reload::Layer::new(filter(log));
    let registry = tracing_subscriber::registry().with(filter);
    #[cfg(feature = "otlp")]
    let registry = registry.with(export.as_ref().map(otlp::Export::layer));
    // Lines are written in batches by a background thread, not by the request path; when it
    // falls behind, callers wait rather than lose lines.
    let (writer, flush) = writer::spawn(std::io::stdout(), writer::Limits::default())
        .map_err(TelemetryError::Writer)?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let layer = fmt::layer().with_writer(writer).with_ansi(ansi);
    let installed = match log.format {
        LogFormat::Json => registry
            .with(
                layer
                    .fmt_fields(json::JsonMembers)
                    .event_format(json::JsonLines),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(layer).try_init(),
    };
    Ok(Telemetry {
        log: LogHandle {
            level: installed.ok().map(|()| handle),
            _flush: flush,
        },
        #[cfg(feature = "otlp")]
        export,
    })
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter; call after the gateway drained.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(export) = self.export {
            export.shutdown().await;
        }
    }
}

impl LogHandle {
    /// Applies `log.level` from a reloaded config (`RUST_LOG`, when set, still wins).
    pub fn set_level(&self, log: &LogConfig) {
        if let Some(handle) = &self.level {
            if handle.reload(filter(log)).is_err() {
                tracing::warn!("log level could not be changed");
            }
        }
    }
}

/// Makes the request span a child of the caller's W3C `traceparent`, when OpenTelemetry export
/// is built in (`otlp` feature); nothing otherwise.
#[cfg(not(feature = "otlp"))]
#[inline(always)]
pub fn adopt_parent(_headers: &http::HeaderMap, _span: &tracing::Span) {}

/// Writes the current span's W3C `traceparent` into an upstream request, when OpenTelemetry
/// export is built in (`otlp` feature); nothing otherwise (the caller's header passes through).
#[cfg(not(feature = "otlp"))]
#[inline(always)]
pub fn inject_context(_headers: &mut http::HeaderMap) {}

#[cfg(feature = "otlp")]
pub use otlp::{adopt_parent, inject_context};
