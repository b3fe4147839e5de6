//! koodrive-gateway: a caching sidecar gateway for the KooDrive Open API.
//!
//! The request path lives in [`pipeline`]; [`gateway::run`] starts the listeners.

/// `AsyncWrite` for a client-connection wrapper (`$wrapper<S>`, holding the connection as
/// `inner`) whose writes go straight through: the framing guard and the header-read timeout only
/// look at what is read.
macro_rules! writes_pass_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }
    };
}

pub mod admin;
pub mod admission;
pub mod auth;
pub mod body;
pub mod budget;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod fleet;
pub mod framing;
pub mod gateway;
pub mod head_timeout;
pub mod headers;
pub mod metrics;
pub mod normalize;
pub mod observe;
pub mod pipeline;
pub mod quota;
pub mod respond;
pub mod route;
pub mod secret;
pub mod state;
pub mod task_list;
pub mod task_poll;
pub mod telemetry;
pub mod tls;
pub mod trace_id;
pub(crate) mod units;
pub mod upstream;

/// How an HTTP/2 connection with prior knowledge opens. hyper-util's `auto` builder serves a
/// connection as HTTP/2 only if its first bytes are all of this, and as HTTP/1 otherwise.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Property-test cases: the given default in CI, or `PROPTEST_CASES` for a longer run
/// (`fuzz/run.sh`).
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
