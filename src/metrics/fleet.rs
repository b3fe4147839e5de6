//! Fleet mode's series, `koodrive_gateway_fleet_*`: the shared tier's lookups, Redis errors by
//! operation, invalidations sent and received, and whether fleet mode is up or fallen back.
//! All exported at 0 from the start, fleet mode on or off.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// How a shared-tier lookup ended.
pub const LOOKUP_RESULTS: [&str; 4] = ["hit", "miss", "error", "tampered"];

/// The Redis operations the fleet makes, as `fleet_redis_errors_total` labels them.
pub const OPERATIONS: [&str; 10] = [
    "connect",
    "budget",
    "register",
    "heartbeat",
    "generation",
    "invalidate",
    "lookup",
    "store",
    "lock",
    "unlock",
];

/// What an invalidation dropped: one user's pages, or every page.
pub const INVALIDATION_KINDS: [&str; 2] = ["user", "all"];

#[derive(Default)]
pub struct FleetMetrics {
    /// 1 while fleet mode is up (Redis in use), 0 while off or fallen back to first-tier only.
    pub up: Gauge,
    /// 1 while fleet mode is configured but fallen back (Redis calls stopped until a reconnect
    /// succeeds); 0 while up or off.
    pub breaker_open: Gauge,
    /// Times fleet mode fell back to first-tier only.
    pub fallbacks: Counter,
    pub lookups: Family<ResultLabels, Counter>,
    pub redis_errors: Family<OperationLabels, Counter>,
    pub invalidations_sent: Family<KindLabels, Counter>,
    pub invalidations_received: Family<KindLabels, Counter>,
    /// Fills that waited for another sidecar's fetch of the same page, by how the wait ended.
    pub lock_waits: Family<ResultLabels, Counter>,
}

/// How a wait on another sidecar's fill ended: its page came, or this sidecar fetched itself.
pub const LOCK_WAIT_RESULTS: [&str; 2] = ["filled", "fetched"];

impl FleetMetrics {
    pub(super) fn zero_known_series(&self) {
        for result in LOOKUP_RESULTS {
            drop(self.lookups.get_or_create(&ResultLabels { result }));
        }
        for result in LOCK_WAIT_RESULTS {
            drop(self.lock_waits.get_or_create(&ResultLabels { result }));
        }
        for operation in OPERATIONS {
            drop(
                self.redis_errors
                    .get_or_create(&OperationLabels { operation }),
            );
        }
        for kind in INVALIDATION_KINDS {
            drop(self.invalidations_sent.get_or_create(&KindLabels { kind }));
            drop(
                self.invalidations_received
                    .get_or_create(&KindLabels { kind }),
            );
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "fleet_up",
            "1 while fleet mode uses Redis, 0 while off or fallen back to first-tier only",
            self.up.clone(),
        );
        registry.register(
            "fleet_breaker_open",
            "1 while fleet mode is configured but fallen back to first-tier only (Redis calls stopped)",
            self.breaker_open.clone(),
        );
        registry.register(
            "fleet_fallbacks",
            "Times fleet mode fell back to first-tier only (Redis unreachable or failing)",
            self.fallbacks.clone(),
        );
        registry.register(
            "fleet_lookups",
            "Shared-tier (Redis) lookups after a first-tier miss, by result",
            self.lookups.clone(),
        );
        registry.register(
            "fleet_redis_errors",
            "Redis calls that failed or timed out, by operation",
            self.redis_errors.clone(),
        );
        registry.register(
            "fleet_invalidations_sent",
            "Invalidations this sidecar made fleet-wide (a user's generation or the fleet epoch bumped)",
            self.invalidations_sent.clone(),
        );
        registry.register(
            "fleet_invalidations_received",
            "Invalidations learned from other sidecars over Pub/Sub",
            self.invalidations_received.clone(),
        );
        registry.register(
            "fleet_lock_waits",
            "Fills that waited on another sidecar's fetch of the same page, by how the wait ended",
            self.lock_waits.clone(),
        );
    }

    pub fn error(&self, operation: &'static str) {
        self.redis_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&ResultLabels { result }).inc();
    }
}
