//! The worst-case memory of a gateway run with a given config: each bound the config sets,
//! times what one unit of it can hold, summed. The README's "Worst-case memory" table is this
//! sum for the defaults, and a test holds the Kubernetes manifest's memory limit above it.

use super::Config;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The I/O buffer one client stream or upstream connection may fill: HTTP/2's flow-control
/// windows and send buffer, and the upstream client's read buffer, are set to it.
pub const IO_BUFFER: usize = 64 * 1024;

/// The process with nothing in flight: code, runtime, metrics, tables (measured in
/// `bench/RESULTS.md`, with room to spare).
const BASE: u64 = 32 * MIB;
/// A client connection's own state: hyper's connection, the guards, the task (an idle one of
/// either protocol measured below this, `bench/RESULTS.md`).
const CONNECTION: u64 = 16 * KIB;
/// A request in flight beyond its bodies: its future and span, the upstream connection's state
/// and TLS buffers.
const REQUEST: u64 = 64 * KIB;
/// Log lines queued before requests wait for stdout.
const LOG_QUEUE: u64 = 4 * MIB;
/// The cache's own bounded tables beside its pages: per-user generations (at most 100,000) and
/// the keys of pages too large to share (at most 10,000).
const CACHE_TABLES: u64 = 8 * MIB;

/// One term of the sum: what it is and how many bytes it can hold.
pub type Term = (&'static str, u64);

impl Config {
    /// The terms of the worst-case memory with `cores` worker threads (the CPU limit).
    pub fn worst_case_memory(&self, cores: u64) -> Vec<Term> {
        let server = &self.server;
        let head = server.max_header_bytes as u64;
        let io = IO_BUFFER as u64;
        // HTTP/1: hyper's read buffer and the framing guard's copy of a head; HTTP/2: a header
        // block being gathered and the connection's flow-control window.
        let per_connection = CONNECTION + head + head.max(io);
        let connections = (server.max_connections + self.admin.max_connections) as u64;
        // Its answer's send buffer and its upstream connection's read buffer.
        let per_request = REQUEST + 2 * io;
        vec![
            ("process at rest", BASE),
            ("cache.max_bytes", self.cache.max_bytes),
            (
                "cache tables: user generations, too-large keys",
                CACHE_TABLES,
            ),
            ("server.max_buffered_bytes", server.max_buffered_bytes),
            (
                "connections: (server + admin).max_connections x per-connection buffers",
                connections * per_connection,
            ),
            (
                "requests: server.max_in_flight x per-request buffers",
                server.max_in_flight as u64 * per_request,
            ),
            (
                "normalizing: a decoded body and its rewrite per core",
                cores * 2 * self.normalize.max_body as u64,
            ),
            ("log queue", LOG_QUEUE),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_bound_adds_to_the_worst_case() {
        let base = "[upstream]\nurl = \"https://x.example\"\n[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"\n";
        let total = |extra: &str| -> u64 {
            let config = Config::parse(&format!("{base}{extra}"), Vec::new()).unwrap();
            config.worst_case_memory(1).iter().map(|(_, n)| n).sum()
        };
        let defaults = total("");
        for extra in [
            "[server]\nmax_connections = 2048\n",
            "[server]\nmax_in_flight = 2048\n",
            "[server]\nmax_buffered_bytes = \"100MiB\"\n",
            "[cache]\nmax_bytes = \"100MiB\"\n",
            "[admin]\nmax_connections = 1000\n",
        ] {
            assert!(total(extra) > defaults, "{extra}");
        }
    }
}
