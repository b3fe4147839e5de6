//! The upstream budget's series: tokens left, requests delayed and refused (by route and
//! priority), background refreshes skipped, KooDrive's throttles, the cooldown.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ReasonLabels;
use crate::route::Route;

/// The budget's priorities, as `quota::Priority::as_str` names them.
pub const PRIORITIES: [&str; 3] = ["write", "client", "background"];

/// How KooDrive throttled us, as `quota::Throttle::as_str` names it.
pub const THROTTLES: [&str; 2] = ["status_429", "apig_0308"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub route: &'static str,
    pub priority: &'static str,
}

#[derive(Default)]
pub struct QuotaMetrics {
    /// Tokens left in the bucket when one was last taken (0 when one was last missing).
    pub tokens: Gauge,
    pub delayed: Family<BudgetLabels, Counter>,
    pub refused: Family<BudgetLabels, Counter>,
    pub refreshes_skipped: Counter,
    pub throttles: Family<ReasonLabels, Counter>,
    /// 1 while calls to KooDrive wait for a cooldown.
    pub cooldown_active: Gauge,
    /// Fleet mode: 1 while Redis is away and this sidecar spends its local share.
    pub local_share_active: Gauge,
    /// Fleet mode: the sidecars this one last saw registered (its share is the budget over this).
    pub fleet_sidecars: Gauge,
}

impl QuotaMetrics {
    pub(super) fn zero_known_series(&self) {
        for route in Route::ALL.map(Route::name) {
            for priority in PRIORITIES {
                let labels = BudgetLabels { route, priority };
                drop(self.delayed.get_or_create(&labels));
                drop(self.refused.get_or_create(&labels));
            }
        }
        for reason in THROTTLES {
            drop(self.throttles.get_or_create(&ReasonLabels { reason }));
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "budget_tokens",
            "Tokens left in the upstream budget when a call last asked for one",
            self.tokens.clone(),
        );
        registry.register(
            "budget_delayed",
            "Calls to KooDrive that waited for budget, by route and priority",
            self.delayed.clone(),
        );
        registry.register(
            "budget_refused",
            "Calls to KooDrive refused for budget or cooldown (a 429 GATEWAY_RATE_LIMITED or a stale page), by route and priority",
            self.refused.clone(),
        );
        registry.register(
            "budget_refreshes_skipped",
            "Background refreshes skipped for want of budget (the stale page is served on)",
            self.refreshes_skipped.clone(),
        );
        registry.register(
            "upstream_throttles",
            "Times KooDrive throttled the gateway, by how it said so",
            self.throttles.clone(),
        );
        registry.register(
            "budget_cooldown_active",
            "1 while calls to KooDrive wait out a throttling cooldown",
            self.cooldown_active.clone(),
        );
        registry.register(
            "budget_local_share_active",
            "1 while Redis is away and this sidecar spends its local share of the fleet budget",
            self.local_share_active.clone(),
        );
        registry.register(
            "budget_fleet_sidecars",
            "Sidecars this one last saw registered in Redis (its local share is the budget over this)",
            self.fleet_sidecars.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    #[test]
    fn the_budget_series_exist_at_zero_from_the_start() {
        let text = Metrics::new().encode();
        for series in [
            r#"koodrive_gateway_budget_refused_total{route="task_read",priority="client"} 0"#,
            r#"koodrive_gateway_budget_delayed_total{route="task_write",priority="write"} 0"#,
            r#"koodrive_gateway_budget_refused_total{route="task_list",priority="background"} 0"#,
            r#"koodrive_gateway_upstream_throttles_total{reason="status_429"} 0"#,
            r#"koodrive_gateway_upstream_throttles_total{reason="apig_0308"} 0"#,
            r#"koodrive_gateway_cache_stale_served_total{reason="rate-limited"} 0"#,
            "koodrive_gateway_budget_refreshes_skipped_total 0",
            "koodrive_gateway_budget_cooldown_active 0",
            "koodrive_gateway_budget_tokens 0",
            "koodrive_gateway_budget_local_share_active 0",
            "koodrive_gateway_budget_fleet_sidecars 0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
