//! Integration tests: one binary, a mock KooDrive and a gateway per test, real HTTP between them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod cache;
mod cache_races;
mod claims;
mod cli;
mod client_faults;
mod conformance;
mod deploy;
mod docs;
mod errors;
mod faults;
mod forwarding;
mod fuzz;
mod key_agreement;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod monitoring;
mod normalize;
mod observability;
#[cfg(feature = "otlp")]
mod otlp;
mod poisoning;
mod protocol;
mod reference;
mod regressions;
mod reload;
mod tls;
mod trace;
mod walkthrough;
