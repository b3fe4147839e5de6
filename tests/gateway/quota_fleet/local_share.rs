//! Redis killed mid-burst: each sidecar falls back to its local share of the fleet budget (the
//! budget over the sidecars it last saw registered), so each stays within its share, none
//! refuses everything, and the fleet's total stays bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{misses, rate_limit, wait_metric};
use crate::fleet::fleet_of;
use crate::quota::busiest_second;
use crate::support::redis::RedisServer;
use crate::support::{Mock, Reply};

/// Each sidecar's misses use task ids from `(n + 1) * ID_RANGE`: the mock tells them apart.
const ID_RANGE: usize = 100_000;

#[tokio::test]
async fn redis_killed_mid_burst_keeps_each_sidecar_within_its_local_share() {
    let mut redis = RedisServer::start(None);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&arrivals);
    let mock = Mock::start(move |request| {
        let id: usize = request
            .uri
            .path()
            .rsplit('/')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        seen.lock().unwrap().push((Instant::now(), id / ID_RANGE));
        Reply::ok()
    })
    .await;
    // 30 a second with a burst of 6 for the fleet: a share of 10 a second and a burst of 2.
    let (rps, burst, share_rps, share_burst): (u32, u32, usize, usize) = (30, 6, 10, 2);
    let fleet = fleet_of(3, &mock, &redis, &rate_limit(rps, burst, "200ms")).await;
    for gw in &fleet {
        wait_metric(gw, "koodrive_gateway_budget_fleet_sidecars", 3.0).await;
    }
    let until = Instant::now() + Duration::from_secs(6);
    let load = futures_util::future::join_all(
        fleet
            .iter()
            .enumerate()
            .map(|(n, gw)| misses(gw, 20, 400, (n + 1) * ID_RANGE, until)),
    );
    let kill = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.kill();
        for gw in &fleet {
            wait_metric(gw, "koodrive_gateway_budget_local_share_active", 1.0).await;
        }
        Instant::now()
    };
    let (statuses, shared_from) = tokio::join!(load, kill);
    let statuses: Vec<u16> = statuses.into_iter().flatten().collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "only sent or refused for budget"
    );
    let arrivals = arrivals.lock().unwrap().clone();
    let measured = until.saturating_duration_since(shared_from);
    assert!(measured >= Duration::from_secs(2), "{measured:?} on shares");
    for n in 1..=3 {
        let on_share: Vec<Instant> = arrivals
            .iter()
            .filter(|(at, sidecar)| *sidecar == n && *at >= shared_from)
            .map(|(at, _)| *at)
            .collect();
        let busiest = busiest_second(&on_share);
        assert!(
            busiest <= share_rps + share_burst,
            "sidecar {n}: {busiest} calls in one second on its share"
        );
        assert!(
            on_share.len() >= 5,
            "sidecar {n}: {} calls in {measured:?}: a share is never nothing",
            on_share.len()
        );
    }
    let all: Vec<Instant> = arrivals.iter().map(|(at, _)| *at).collect();
    let since: Vec<Instant> = all
        .iter()
        .copied()
        .filter(|at| *at >= shared_from)
        .collect();
    assert!(
        busiest_second(&since) <= (rps + burst) as usize,
        "the shares add up to the budget"
    );
    // Across the fall (the fleet's bucket, then the shares), still bounded.
    let busiest = busiest_second(&all);
    assert!(
        busiest <= 2 * (rps + burst) as usize,
        "{busiest} calls in one second"
    );
}
