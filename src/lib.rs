//! koodrive-gateway: a caching sidecar gateway for the KooDrive Open API.
//!
//! The request path lives in [`pipeline`]; [`gateway::run`] starts the listeners.

pub mod admin;
pub mod auth;
pub mod body;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod error;
pub mod framing;
pub mod gateway;
pub mod head_timeout;
pub mod headers;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod respond;
pub mod route;
pub mod secret;
pub mod task_list;
pub mod telemetry;
pub mod trace_id;
pub mod upstream;

/// Property-test cases: the given default in CI, or `PROPTEST_CASES` for a longer run
/// (`fuzz/run.sh`).
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
