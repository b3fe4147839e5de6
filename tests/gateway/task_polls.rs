//! Cached task polls: `GET /task/{id}` and `GET /task/result?taskId=` are cached and collapsed
//! per identity with their own windows, invalidated by the user's task writes, keyed apart from
//! the task list, and their policies (`[[cache.routes]]`) reload with SIGHUP.

use std::time::{Duration, Instant};

use crate::support::{config, Mock, TestGateway, TASK_CREATE, TASK_LIST};

const POLL: &str = "/koodrive/ose/v1/task/1486254586942472064";

#[tokio::test]
async fn many_clients_polling_one_task_cost_about_one_call_per_ttl() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    // 40 clients poll the task every 50 ms for 2.5 s (bounded in count and time).
    let started = Instant::now();
    let pollers: Vec<_> = (0..40)
        .map(|_| {
            let client = gw.client.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                for _ in 0..50 {
                    if started.elapsed() > Duration::from_millis(2500) {
                        break;
                    }
                    let response = client.get(POLL).await;
                    assert_eq!(response.status, 200, "{}", response.text());
                    answered += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for poller in pollers {
        answered += poller.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // About one call per 1 s TTL (a refresh each time the page goes stale), however many poll.
    let most = (elapsed / 1.0).ceil() as usize + 2;
    assert!(answered >= 200, "{answered} polls answered");
    assert!(
        (1..=most).contains(&mock.hits()),
        "{} KooDrive calls for {answered} polls in {elapsed:.1} s",
        mock.hits()
    );
}

#[tokio::test]
async fn a_poll_is_a_hit_until_its_users_task_write() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let result = "/koodrive/ose/v1/task/result?taskId=7";
    for path in [POLL, result] {
        let miss = gw.client.get(path).await;
        assert!(miss.header("cache-status").contains("fwd=miss"), "{path}");
        let hit = gw.client.get(path).await;
        assert!(hit.header("cache-status").contains("hit"), "{path}");
    }
    assert_eq!(mock.hits(), 2);
    assert_eq!(
        gw.client
            .post_with(TASK_CREATE, &[("content-type", "application/json")], "{}")
            .await
            .status,
        200
    );
    for path in [POLL, result] {
        let after = gw.client.get(path).await;
        assert!(after.header("cache-status").contains("fwd=miss"), "{path}");
    }
    assert_eq!(mock.hits(), 5);
}

#[tokio::test]
async fn polls_are_keyed_by_route_path_and_key_parameters_only() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let get = |path: &'static str| {
        let client = gw.client.clone();
        async move { client.get(path).await }
    };
    get("/koodrive/ose/v1/task/result?taskId=1").await;
    // The same key parameters in another spelling are the same entry, fetched with only them.
    let again = get("/koodrive/ose/v1/task/result?taskId=%31").await;
    assert!(again.header("cache-status").contains("hit"));
    assert_eq!(mock.last().uri.query(), Some("taskId=1"));
    let other = get("/koodrive/ose/v1/task/result?taskId=2").await;
    assert!(other.header("cache-status").contains("fwd=miss"));
    // A parameter the key does not hold, or a repeated one: forwarded as it is, not cached.
    for path in [
        "/koodrive/ose/v1/task/result?taskId=1&x=2",
        "/koodrive/ose/v1/task/result?taskId=1&taskId=2",
        "/koodrive/ose/v1/task/result",
        "/koodrive/ose/v1/task/create",
    ] {
        let hits = mock.hits();
        let response = get(path).await;
        assert!(response.headers.get("cache-status").is_none(), "{path}");
        assert_eq!(mock.hits(), hits + 1, "{path}");
        assert_eq!(mock.last().uri.to_string(), path, "{path}");
    }
    // A task id and the list never share an entry; nor do two task ids.
    get(TASK_LIST).await;
    let list = mock.hits();
    let poll = get("/koodrive/ose/v1/task/1").await;
    assert!(poll.header("cache-status").contains("fwd=miss"));
    assert_eq!(mock.hits(), list + 1);
    assert!(get("/koodrive/ose/v1/task/2")
        .await
        .header("cache-status")
        .contains("fwd=miss"));
}

#[tokio::test]
async fn cache_routes_reload_with_sighup() {
    let mock = Mock::ok().await;
    let long = "[[cache.routes]]\npath = \"/koodrive/ose/v1/task/{id}\"\nttl = \"60s\"";
    let gw = TestGateway::for_mock(&mock, long).await;
    gw.client.get(POLL).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw
        .client
        .get(POLL)
        .await
        .header("cache-status")
        .contains("hit"));
    // Turned off by a reload: forwarded every time.
    let off = "[[cache.routes]]\npath = \"/koodrive/ose/v1/task/{id}\"\nttl = \"0s\"";
    gw.running()
        .reload(&config(&mock.url(), off))
        .await
        .unwrap();
    let hits = mock.hits();
    let forwarded = gw.client.get(POLL).await;
    assert!(forwarded.headers.get("cache-status").is_none());
    assert_eq!(mock.hits(), hits + 1);
}
