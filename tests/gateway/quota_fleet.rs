//! KooDrive's quota across a fleet: one budget and one cooldown shared through a real
//! `redis-server` by three gateways, a local share of the budget while Redis is away, and the
//! edges where the budget meets the upstream client. The mock KooDrive notes when each call
//! arrives; the assertions are on those calls, counted per one-second window.

use std::time::{Duration, Instant};

use crate::support::{within, TestGateway};

mod budget;
mod cooldown;
mod local_share;
mod task_polls;
mod upstream_edges;

pub(crate) const TASK: &str = "/koodrive/ose/v1/task/";

/// The `[upstream.rate_limit]` section, to follow the fleet's own lines.
pub(crate) fn rate_limit(rps: u32, burst: u32, max_wait: &str) -> String {
    format!("[upstream.rate_limit]\nrps = {rps}\nburst = {burst}\nmax_wait = \"{max_wait}\"\n")
}

/// Distinct task reads from `clients` concurrent clients of `gw`, each a miss, until `until`
/// (and at most `per_client` each): the statuses answered.
pub(crate) async fn misses(
    gw: &TestGateway,
    clients: usize,
    per_client: usize,
    first_id: usize,
    until: Instant,
) -> Vec<u16> {
    let loops: Vec<_> = (0..clients)
        .map(|c| {
            let client = gw.client.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..per_client {
                    if Instant::now() >= until {
                        break;
                    }
                    let id = first_id + c * per_client + i;
                    statuses.push(client.get(&format!("{TASK}{id}")).await.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for one in loops {
        statuses.extend(within("a client's misses", one).await.unwrap());
    }
    statuses
}

/// Waits until `name` reads `want` on the gateway.
pub(crate) async fn wait_metric(gw: &TestGateway, name: &str, want: f64) {
    within(name, async {
        while gw.metrics().await.get(name) != Some(&want) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
