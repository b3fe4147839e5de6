//! Integration tests: one binary, a mock KooDrive and a gateway per test, real HTTP between them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod cache;
mod cache_races;
mod cache_sharing;
mod cli;
mod client_faults;
mod configuration;
mod demo;
mod deploy;
mod docs;
mod errors;
mod faults;
mod fleet;
mod forwarding;
mod fuzz;
mod invalidation;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod monitoring;
mod normalization;
mod observability;
#[cfg(feature = "otlp")]
mod otlp;
mod protocol;
mod quota;
mod quota_fleet;
mod reference;
mod reload;
mod signals;
mod task_polls;
mod tls;
mod trace;
