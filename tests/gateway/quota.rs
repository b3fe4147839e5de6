//! KooDrive's quota: the upstream budget never lets more than `rps` a second plus `burst` reach
//! KooDrive, writes go before reads, a stale page answers at once when the budget is short, and
//! KooDrive's throttling (a 429, or `APIG.0308` in a body) starts a cooldown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::support::{within, Mock, Reply, TestGateway, TestResponse, TASK_CREATE, TASK_LIST};

const TASK: &str = "/koodrive/ose/v1/task/";

/// A mock that answers every request with `Reply::ok()` and notes when each arrived.
pub(crate) async fn timed_mock() -> (Mock, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&arrivals);
    let mock = Mock::start(move |_| {
        seen.lock().unwrap().push(Instant::now());
        Reply::ok()
    })
    .await;
    (mock, arrivals)
}

/// The most calls KooDrive saw in any one-second window (each window starting at a call).
pub(crate) fn busiest_second(arrivals: &[Instant]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| t.duration_since(sorted[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

pub(crate) fn assert_rate_limited(response: &TestResponse) {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["code"], "GATEWAY_RATE_LIMITED");
    assert_eq!(
        response.header("koodrive-gateway-error"),
        "GATEWAY_RATE_LIMITED"
    );
    let retry_after: u64 = response.header("retry-after").parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
}

#[tokio::test]
async fn a_burst_of_distinct_misses_never_exceeds_the_budget_in_any_second() {
    let (mock, arrivals) = timed_mock().await;
    let overlay = r#"
        [upstream.rate_limit]
        rps = 5
        burst = 3
        max_wait = "500ms"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // Three waves of 40 distinct misses, across list pages and task reads, over about 3 s.
    let mut answered = Vec::new();
    for wave in 0..3 {
        let requests: Vec<_> = (0..40)
            .map(|i| {
                let client = gw.client.clone();
                let path = match i % 2 {
                    0 => format!("{TASK_LIST}?pageCursor={}", 1_000 + wave * 40 + i),
                    _ => format!("{TASK}{}", 1_000 + wave * 40 + i),
                };
                tokio::spawn(async move { client.get(&path).await })
            })
            .collect();
        for request in requests {
            answered.push(request.await.unwrap());
        }
    }
    let sent = answered.iter().filter(|r| r.status == 200).count();
    for refused in answered.iter().filter(|r| r.status != 200) {
        assert_rate_limited(refused);
    }
    assert!(sent >= 3, "some calls go out: {sent}");
    assert!(sent < answered.len(), "the burst is over the budget");
    assert_eq!(mock.hits(), sent, "nothing refused reached KooDrive");
    let busiest = busiest_second(&arrivals.lock().unwrap());
    assert!(busiest <= 5 + 3, "{busiest} calls in one second");
    let metrics = gw.metrics().await;
    let refused: f64 = ["task_list", "task_read"]
        .iter()
        .map(|route| {
            metrics[&format!(
                r#"koodrive_gateway_budget_refused_total{{route="{route}",priority="client"}}"#
            )]
        })
        .sum();
    assert_eq!(refused as usize, answered.len() - sent);
}

#[tokio::test]
async fn a_write_during_saturation_by_reads_is_sent_within_the_bound() {
    let mock = Mock::ok().await;
    let overlay = r#"
        [upstream.rate_limit]
        rps = 4
        burst = 1
        max_wait = "2s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    // Twenty readers keep the budget spent for the whole test (bounded: 40 rounds or 20 s).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..20)
        .map(|r| {
            let (client, stop) = (gw.client.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let started = Instant::now();
                for i in 0..40 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed)
                        || started.elapsed() > Duration::from_secs(20)
                    {
                        break;
                    }
                    client.get(&format!("{TASK}{}", r * 100 + i)).await;
                }
            })
        })
        .collect();
    // Saturated: reads are being refused for want of budget.
    within("reads refused for budget", async {
        loop {
            let metrics = gw.metrics().await;
            let key =
                r#"koodrive_gateway_budget_refused_total{route="task_read",priority="client"}"#;
            if metrics[key] > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let json = [("content-type", "application/json")];
    let started = Instant::now();
    let answer = gw
        .client
        .post_with(TASK_CREATE, &json, r#"{"taskName":"w"}"#)
        .await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Within max_wait (2 s), with a margin for a loaded machine; a write waits one token at most.
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(mock
        .requests()
        .iter()
        .any(|seen| seen.uri.path().ends_with("/task/create")));
    for reader in readers {
        within("readers stop", reader).await.unwrap();
    }
    let metrics = gw.metrics().await;
    let key = r#"koodrive_gateway_budget_refused_total{route="task_write",priority="write"}"#;
    assert_eq!(metrics[key], 0.0);
}

#[tokio::test]
async fn over_budget_a_stale_page_is_served_at_once_and_says_why() {
    let mock = Mock::ok().await;
    let overlay = r#"
        [upstream.rate_limit]
        rps = 1
        burst = 1
        max_wait = "3s"
        [cache]
        ttl = "100ms"
        stale_while_revalidate = "0s"
        stale_if_error = "60s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let path = format!("{TASK_LIST}?status=2");
    assert_eq!(gw.client.get(&path).await.status, 200);
    // Past its ttl; the one token a second is spent until a second after the first call.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let stale = gw.client.get(&path).await;
    let took = started.elapsed();
    assert_eq!(stale.status, 200, "{}", stale.text());
    let status = stale.header("cache-status");
    assert!(status.contains("detail=rate-limited"), "{status}");
    assert!(
        took < Duration::from_millis(700),
        "at once, not after max_wait: {took:?}"
    );
    assert_eq!(mock.hits(), 1);
    let metrics = gw.metrics().await;
    let key = r#"koodrive_gateway_cache_stale_served_total{reason="rate-limited"}"#;
    assert_eq!(metrics[key], 1.0);
    // Without a stale page the request waits for the next token and is sent.
    let started = Instant::now();
    let waited = gw.client.get(&format!("{TASK_LIST}?status=3")).await;
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(mock.hits(), 2);
    assert!(started.elapsed() < Duration::from_secs(3) + Duration::from_secs(2));
    let key = r#"koodrive_gateway_budget_delayed_total{route="task_list",priority="client"}"#;
    assert_eq!(gw.metrics().await[key], 1.0);
}

/// No budget configured: KooDrive's 429 still starts a cooldown for its `Retry-After`, during
/// which stale pages are served and other requests get the gateway's 429 without reaching
/// KooDrive; afterwards calls go out again.
#[tokio::test]
async fn a_koodrive_429_starts_a_cooldown_for_its_retry_after() {
    let throttling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on = Arc::clone(&throttling);
    let mock = Mock::start(move |seen| {
        match on.load(std::sync::atomic::Ordering::SeqCst) && seen.uri.path().ends_with("/9") {
            true => Reply::json(429, r#"{"error_code":"APIG.0308","error_msg":"throttled"}"#)
                .header("retry-after", "2"),
            false => Reply::ok(),
        }
    })
    .await;
    let overlay = r#"
        [cache]
        ttl = "100ms"
        stale_while_revalidate = "0s"
        stale_if_error = "60s"
    "#;
    let gw = TestGateway::for_mock(&mock, overlay).await;
    let page = format!("{TASK_LIST}?status=2");
    assert_eq!(gw.client.get(&page).await.status, 200);
    throttling.store(true, std::sync::atomic::Ordering::SeqCst);
    let throttled = gw.client.get(&format!("{TASK}9")).await;
    let started = Instant::now();
    assert_eq!(throttled.status, 429);
    assert!(
        throttled.headers.get("koodrive-gateway-error").is_none(),
        "KooDrive's own"
    );
    let hits = mock.hits();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stale = gw.client.get(&page).await;
    assert_eq!(stale.status, 200);
    assert!(stale.header("cache-status").contains("detail=rate-limited"));
    let refused = gw.client.get(&format!("{TASK}10")).await;
    assert_rate_limited(&refused);
    assert!(refused.header("retry-after").parse::<u64>().unwrap() <= 2);
    assert_rate_limited(&gw.client.post_with(TASK_CREATE, &[], Bytes::new()).await);
    assert_eq!(
        mock.hits(),
        hits,
        "nothing reached KooDrive during the cooldown"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        metrics[r#"koodrive_gateway_upstream_throttles_total{reason="status_429"}"#],
        1.0
    );
    assert_eq!(metrics["koodrive_gateway_budget_cooldown_active"], 1.0);
    // A 429 is a refusal, not a failure: the breaker stays shut.
    assert_eq!(metrics["koodrive_gateway_breaker_open"], 0.0);
    // Over once Retry-After has passed (polled, bounded).
    within("the cooldown ends", async {
        while gw.client.get(&format!("{TASK}11")).await.status != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    within("the gauge drops", async {
        while gw.metrics().await["koodrive_gateway_budget_cooldown_active"] != 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn apig_0308_in_a_body_at_any_status_starts_the_default_cooldown() {
    let mock = Mock::start(|seen| match seen.uri.path().ends_with("/9") {
        true => Reply::json(
            400,
            r#"{"code":"APIG.0308","msg":"The throttling threshold has been reached"}"#,
        ),
        false => Reply::ok(),
    })
    .await;
    let gw = TestGateway::for_mock(&mock, "[upstream]\nthrottle_cooldown = \"30s\"").await;
    assert_eq!(gw.client.get(&format!("{TASK}9")).await.status, 400);
    let refused = gw.client.get(&format!("{TASK}10")).await;
    assert_rate_limited(&refused);
    // The default cooldown, rounded up to whole seconds.
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!((28..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(mock.hits(), 1);
    let metrics = gw.metrics().await;
    assert_eq!(
        metrics[r#"koodrive_gateway_upstream_throttles_total{reason="apig_0308"}"#],
        1.0
    );
}

/// The access event's `budget` says when a request waited for budget (`delayed`) and when it was
/// answered with a stale page because of the budget (`stale`).
#[tokio::test]
async fn the_access_event_says_when_the_budget_delayed_or_answered_stale() {
    use crate::cli::{temp_config, Process};
    const ACCESS: &str = r#""target":"koodrive_gateway::access""#;
    let mock = Mock::ok().await;
    let config = temp_config(
        "quota-access",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{}\"\n[upstream.rate_limit]\nrps = 1\nburst = 1\nmax_wait = \"5s\"\n\
             [cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"60s\"\n\
             [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"t\"\n[log]\nformat = \"json\"\n",
            mock.url()
        ),
    );
    let mut process = Process::spawn(
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    let (addr, _) = process.listening().await;
    let client = crate::support::Client::new(addr);
    let access = |line: Option<&String>| -> serde_json::Value {
        serde_json::from_str(line.map_or("", String::as_str)).unwrap()
    };

    let page = format!("{TASK_LIST}?status=1");
    assert_eq!(client.get(&page).await.status, 200);
    let first = access(process.lines_until(ACCESS).await.last());
    assert!(first["span"].get("budget").is_none(), "{first}");
    // The one token is spent: the next call waits for the next (about a second).
    assert_eq!(client.get(&format!("{TASK}1")).await.status, 200);
    let delayed = access(process.lines_until(ACCESS).await.last());
    assert_eq!(delayed["span"]["budget"], "delayed", "{delayed}");
    // The page went stale meanwhile, and the next token is a second away: served stale.
    let stale = client.get(&page).await;
    assert!(stale.header("cache-status").contains("detail=rate-limited"));
    let stale = access(process.lines_until(ACCESS).await.last());
    assert_eq!(stale["span"]["budget"], "stale", "{stale}");
    assert_eq!(stale["cache"], "stale", "{stale}");
    let _ = std::fs::remove_file(config);
}

/// `--check-config` validates the budget and the routes table, naming the key at fault.
#[test]
fn check_config_names_the_bad_budget_or_route_key() {
    use crate::cli::temp_config;
    let base = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\
                [auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"\n";
    let cases = [
        ("", None),
        (
            "[upstream.rate_limit]\nrps = 0\n",
            Some("upstream.rate_limit.rps"),
        ),
        (
            "[upstream.rate_limit]\nburst = 5\n",
            Some("upstream.rate_limit.burst"),
        ),
        (
            "[upstream.rate_limit]\nrps = 5\nmax_wait = \"soon\"\n",
            Some("upstream.rate_limit.max_wait"),
        ),
        (
            "[[cache.routes]]\npath = \"/koodrive/ose/v1/task/{id}\"\nttl = \"2s\"\n\
             [[cache.routes]]\npath = \"/koodrive/ose/v1/files/{id}\"\nttl = \"1s\"\n",
            Some("cache.routes[1].path"),
        ),
    ];
    for (i, (overlay, key)) in cases.into_iter().enumerate() {
        let path = temp_config(&format!("quota-check-{i}"), &format!("{base}{overlay}"));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_koodrive-gateway"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_remove("KOODRIVE_GATEWAY_CONFIG")
            .output()
            .unwrap();
        std::fs::remove_file(path).ok();
        let stderr = String::from_utf8_lossy(&output.stderr);
        match key {
            None => assert!(output.status.success(), "{overlay}: {stderr}"),
            Some(key) => {
                assert!(!output.status.success(), "{overlay} passed");
                assert!(stderr.contains(key), "{overlay}: {stderr}");
            }
        }
    }
}
