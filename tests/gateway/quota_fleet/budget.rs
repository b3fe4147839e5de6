//! One budget for the fleet: however many sidecars, KooDrive never sees more than `rps` a
//! second plus `burst`, and a write during saturation is sent within `max_wait`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{misses, rate_limit, wait_metric, TASK};
use crate::fleet::{fleet_of, metric};
use crate::quota::{busiest_second, timed_mock};
use crate::support::redis::RedisServer;
use crate::support::{within, Mock, TASK_CREATE};

#[tokio::test]
async fn a_burst_of_thousands_of_misses_across_three_sidecars_stays_within_the_fleet_budget() {
    let redis = RedisServer::start(None);
    let (mock, arrivals) = timed_mock().await;
    let (rps, burst) = (20, 5);
    let fleet = fleet_of(3, &mock, &redis, &rate_limit(rps, burst, "300ms")).await;
    for gw in &fleet {
        wait_metric(gw, "koodrive_gateway_budget_fleet_sidecars", 3.0).await;
    }
    // 3 sidecars x 60 clients x up to 14 distinct misses each (2520), for at most 6 s.
    let started = Instant::now();
    let until = started + Duration::from_secs(6);
    let runs = fleet
        .iter()
        .enumerate()
        .map(|(n, gw)| misses(gw, 60, 14, 100_000 * (n + 1), until));
    let statuses: Vec<u16> = within("the burst", futures_util::future::join_all(runs))
        .await
        .into_iter()
        .flatten()
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let sent = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.len() >= 1000, "{} requests made", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "only sent or refused for budget"
    );
    assert_eq!(mock.hits(), sent, "nothing refused reached KooDrive");
    let arrivals = arrivals.lock().unwrap().clone();
    let busiest = busiest_second(&arrivals);
    assert!(
        busiest <= (rps + burst) as usize,
        "{busiest} KooDrive calls in one second (budget {rps} + {burst})"
    );
    // The budget is spent, not refused wholesale.
    let most = rps as f64 * elapsed + f64::from(burst);
    assert!(
        sent as f64 >= most / 3.0 && sent as f64 <= most,
        "{sent} sent in {elapsed:.1} s"
    );
    for gw in &fleet {
        assert_eq!(
            metric(gw, "koodrive_gateway_budget_local_share_active").await,
            0.0
        );
    }
}

#[tokio::test]
async fn a_write_during_fleet_wide_saturation_is_sent_within_the_bound() {
    let redis = RedisServer::start(None);
    let mock = Mock::ok().await;
    let fleet = fleet_of(3, &mock, &redis, &rate_limit(4, 1, "2s")).await;
    // 15 readers on each sidecar keep the fleet's budget spent (bounded: 40 rounds or 20 s).
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (n, gw) in fleet.iter().enumerate() {
        for r in 0..15 {
            let (client, stop) = (gw.client.clone(), Arc::clone(&stop));
            readers.push(tokio::spawn(async move {
                let started = Instant::now();
                for i in 0..40 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    client
                        .get(&format!("{TASK}{}", n * 10_000 + r * 100 + i))
                        .await;
                }
            }));
        }
    }
    // Saturated: reads are refused for want of budget on every sidecar.
    for gw in &fleet {
        let key = r#"koodrive_gateway_budget_refused_total{route="task_read",priority="client"}"#;
        within("reads refused for budget", async {
            while metric(gw, key).await == 0.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    let started = Instant::now();
    let answer = fleet[1]
        .client
        .post_with(
            TASK_CREATE,
            &[("content-type", "application/json")],
            Bytes::from_static(b"{\"taskName\":\"w\"}"),
        )
        .await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Within max_wait (2 s), with a margin for a loaded machine.
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert!(mock
        .requests()
        .iter()
        .any(|seen| seen.uri.path().ends_with("/task/create")));
    for reader in readers {
        within("readers stop", reader).await.unwrap();
    }
    let key = r#"koodrive_gateway_budget_refused_total{route="task_write",priority="write"}"#;
    assert_eq!(metric(&fleet[1], key).await, 0.0);
}
