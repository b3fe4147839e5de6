//! What each listener's client connections are held to: the protocol settings, the header-read,
//! idle and lifetime bounds, and the cap on open connections with its count.

use std::sync::atomic::Ordering;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::memory::IO_BUFFER;
use crate::config::{Config, ServerConfig};
use crate::head_timeout::Timeouts;
use crate::metrics::{ListenerLabels, Metrics};

/// HTTP/1.1 and cleartext HTTP/2 (prior knowledge), with a bound on head sizes. (The header-read
/// and idle timeouts are the connection's own, `HeadTimeout`, not hyper's.) An HTTP/2 peer silent
/// for an idle timeout is pinged, and the connection closed if the ping is not answered within
/// a header-read timeout: a dead peer is found even while its requests are in service.
pub(super) fn builder(server: &ServerConfig, timeouts: Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeouts.idle))
        .keep_alive_timeout(timeouts.header_read)
        // Flow-control windows and the send buffer at HTTP/2's own default of 64 KiB (hyper's
        // are 1 MiB and 400 KiB): what one connection or stream may make the gateway hold is part
        // of the worst-case memory (README).
        .initial_connection_window_size(IO_BUFFER_U32)
        .initial_stream_window_size(IO_BUFFER_U32)
        .max_send_buf_size(IO_BUFFER)
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

const IO_BUFFER_U32: u32 = IO_BUFFER as u32;

/// What a listener's client connections are held to.
#[derive(Clone)]
pub(super) struct Limits {
    /// The largest request head.
    pub(super) max_head: usize,
    pub(super) timeouts: Timeouts,
    /// Connections open at once; more are closed as soon as they are accepted.
    max_connections: usize,
    /// The listener's open connections (the count the cap is checked against).
    open: Gauge,
    pub(super) refused: Counter,
}

impl Limits {
    pub(super) fn proxy(server: &ServerConfig, metrics: &Metrics) -> Limits {
        Limits::new(
            server,
            Timeouts {
                header_read: server.header_read_timeout,
                idle: server.idle_timeout,
                max_age: server.max_connection_duration,
            },
            server.max_connections,
            metrics,
            "proxy",
        )
    }

    pub(super) fn admin(config: &Config, metrics: &Metrics) -> Limits {
        let admin = &config.admin;
        Limits::new(
            &config.server,
            Timeouts {
                header_read: admin.header_read_timeout,
                idle: admin.idle_timeout,
                max_age: config.server.max_connection_duration,
            },
            admin.max_connections,
            metrics,
            "admin",
        )
    }

    fn new(
        server: &ServerConfig,
        timeouts: Timeouts,
        max_connections: usize,
        metrics: &Metrics,
        listener: &'static str,
    ) -> Limits {
        let labels = ListenerLabels { listener };
        Limits {
            max_head: server.max_header_bytes,
            timeouts,
            max_connections,
            open: metrics.connections.get_or_create(&labels).clone(),
            refused: metrics.connections_refused.get_or_create(&labels).clone(),
        }
    }

    /// A place for one more connection, if the listener is below its cap: held while the
    /// connection is open.
    pub(super) fn admit(&self) -> Option<Open> {
        let max = i64::try_from(self.max_connections).unwrap_or(i64::MAX);
        self.open
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Open(self.open.clone()))
    }
}

/// One open connection, counted out when its task ends.
pub(super) struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
