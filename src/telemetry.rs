//! Process-wide tracing setup: JSON or pretty lines on stdout, level from `RUST_LOG` or
//! `log.level` (reloadable). Every event inside a request carries that request's span, and so
//! its `trace_id`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// Changes the log level of a running process (SIGHUP reload); dropping it flushes the log.
pub struct LogHandle {
    level: Option<reload::Handle<EnvFilter, Registry>>,
    _flush: tracing_appender::non_blocking::WorkerGuard,
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

pub fn init(log: &LogConfig) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter(log));
    let registry = tracing_subscriber::registry().with(filter);
    // Lines are written by a background thread, not by the request path; when it falls behind,
    // callers wait rather than lose lines.
    let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let layer = fmt::layer().with_writer(writer);
    let installed = match log.format {
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(layer).try_init(),
    };
    LogHandle {
        level: installed.ok().map(|()| handle),
        _flush: flush,
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
pub fn adopt_parent(_headers: &http::HeaderMap, _span: &tracing::Span) {}

/// Writes the current span's W3C `traceparent` into an upstream request, when OpenTelemetry
/// export is built in (`otlp` feature); nothing otherwise (the caller's header passes through).
pub fn inject_context(_headers: &mut http::HeaderMap) {}
