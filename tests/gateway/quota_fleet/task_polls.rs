//! Many clients polling one task across three sidecars cost KooDrive about one call per TTL:
//! the poll is cached per identity, and a sidecar whose copy went stale takes the page another
//! sidecar fetched.

use std::time::{Duration, Instant};

use super::TASK;
use crate::fleet::fleet_of;
use crate::support::redis::RedisServer;
use crate::support::{within, Mock};

#[tokio::test]
async fn polling_one_task_from_many_clients_across_three_sidecars_costs_about_one_call_per_ttl() {
    let redis = RedisServer::start(None);
    let mock = Mock::ok().await;
    let fleet = fleet_of(3, &mock, &redis, "").await;
    let poll = format!("{TASK}1486254586942472064");
    // 15 clients per sidecar poll every 50 ms for 3 s (bounded in count and time).
    let started = Instant::now();
    let mut pollers = Vec::new();
    for gw in &fleet {
        for _ in 0..15 {
            let (client, poll) = (gw.client.clone(), poll.clone());
            pollers.push(tokio::spawn(async move {
                let mut answered = 0;
                for _ in 0..60 {
                    if started.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                    let response = client.get(&poll).await;
                    assert_eq!(response.status, 200, "{}", response.text());
                    answered += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answered
            }));
        }
    }
    let mut answered = 0;
    for poller in pollers {
        answered += within("a poller", poller).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The poll route's TTL is 1 s: about one call a second for the fleet (a refresh each time
    // the page goes stale, taken by the other sidecars from Redis), plus a margin.
    let most = elapsed.ceil() as usize + 2;
    assert!(answered >= 300, "{answered} polls answered");
    assert!(
        (1..=most).contains(&mock.hits()),
        "{} KooDrive calls for {answered} polls across three sidecars in {elapsed:.1} s",
        mock.hits()
    );
}
