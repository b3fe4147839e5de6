//! The fleet's panels and Redis alerts, evaluated by a real Prometheus scraping two gateways that
//! share a real `redis-server`: every fleet panel's query returns data while the fleet works, and
//! the Redis alerts stay quiet, then fire for both sidecars when Redis is killed.

use super::real_prometheus::{firing, panels_still_without_data, scraping};
use super::*;
use crate::cache::create;
use crate::fleet::{fleet_of, wait_fleet_up, wait_keys};
use crate::support::redis::RedisServer;

/// The alerts a Redis outage fires on every sidecar of the fleet.
const REDIS_ALERTS: [&str; 2] = [
    "KooDriveGatewayRedisUnreachable",
    "KooDriveGatewayFleetFallenBack",
];

const PODS: [&str; 2] = ["fleet-0", "fleet-1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_panels_and_redis_alerts_work_on_a_real_prometheus() {
    packages::require("prometheus", "prometheus");
    let mut redis = RedisServer::start(None);
    let mock = Mock::ok().await;
    let fleet = fleet_of(2, &mock, &redis, "").await;
    let prometheus = scraping(&[
        (fleet[0].running().admin_addr, PODS[0]),
        (fleet[1].running().admin_addr, PODS[1]),
    ])
    .await;

    // A page fetched through A, found in the shared tier by B; a write through A invalidates
    // it on B (sent by A, received by B); B's next list looks in Redis again.
    let user = [("x-user-id", "ada")];
    assert_eq!(fleet[0].client.get_with(TASK_LIST, &user).await.status, 200);
    wait_keys(&redis, "koodrive-gateway:page:*", 1).await;
    assert_eq!(fleet[1].client.get_with(TASK_LIST, &user).await.status, 200);
    assert_eq!(
        fleet[0].client.send(create(&fleet[0], "ada")).await.status,
        200
    );
    assert_eq!(fleet[1].client.get_with(TASK_LIST, &user).await.status, 200);
    for expr in [
        r#"koodrive_gateway_fleet_lookups_total{pod="fleet-1", result="hit"} >= 1"#,
        r#"sum(koodrive_gateway_fleet_invalidations_sent_total{pod="fleet-0"}) >= 1"#,
        r#"sum(koodrive_gateway_fleet_invalidations_received_total{pod="fleet-1"}) >= 1"#,
    ] {
        assert!(prometheus.wait_for(expr).await, "Prometheus saw {expr}");
    }

    // Every fleet panel's query, as Grafana sends it, returns data (within its 1m window).
    let queries: Vec<_> = dashboard_queries()
        .into_iter()
        .filter(|(_, expr)| is_fleet_query(expr))
        .collect();
    for metric in [
        "lookups_total",
        "redis_errors_total",
        "breaker_open",
        "invalidations_sent_total",
        "invalidations_received_total",
        "fallbacks_total",
    ] {
        let metric = format!("koodrive_gateway_fleet_{metric}");
        assert!(
            queries.iter().any(|(_, q)| q.contains(&metric)),
            "a panel of {metric}"
        );
    }
    let empty = panels_still_without_data(&prometheus, &queries).await;
    assert!(empty.is_empty(), "fleet panels without data: {empty:#?}");
    // A healthy fleet fires none of the Redis alerts.
    let fired = firing(&prometheus.alerts().await);
    assert!(
        fired
            .iter()
            .all(|(name, _)| !REDIS_ALERTS.contains(&name.as_str())),
        "Redis alerts with Redis healthy: {fired:?}"
    );

    // Redis killed: both sidecars fall back and keep answering; both alerts fire for each.
    // Bounded: at most 40 s of two requests a second.
    redis.kill();
    for gw in &fleet {
        wait_fleet_up(gw, false).await;
    }
    let outage = Instant::now();
    let expected: BTreeSet<(String, String)> = REDIS_ALERTS
        .iter()
        .flat_map(|alert| PODS.map(|pod| (alert.to_string(), pod.to_owned())))
        .collect();
    let mut fired = BTreeSet::new();
    while outage.elapsed() < Duration::from_secs(40) {
        for gw in &fleet {
            let answer = gw.client.get_with(TASK_LIST, &user).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        fired = firing(&prometheus.alerts().await);
        if expected.is_subset(&fired) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        expected.is_subset(&fired),
        "Redis alerts did not fire for both sidecars; firing: {fired:?}\n{:#?}",
        prometheus.alerts().await
    );
    assert!(
        fired
            .iter()
            .all(|(name, _)| REDIS_ALERTS.contains(&name.as_str())),
        "only the Redis alerts fire (KooDrive is healthy): {fired:?}"
    );
}
