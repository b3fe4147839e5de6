//! The dashboard's queries and the outage alerts, evaluated by a real Prometheus scraping a real
//! gateway.

use super::*;

/// A Prometheus scraping each `(admin listener, pod)` every second, labelled as the Kubernetes
/// scrape set-up labels each pod, and evaluating the shipped alerts with their `for:` cut short;
/// returned once it has scraped every gateway.
pub(super) async fn scraping(gateways: &[(std::net::SocketAddr, &str)]) -> Prometheus {
    let targets: String = gateways
        .iter()
        .map(|(addr, pod)| {
            format!(
                "      - targets: [\"{addr}\"]\n        labels: {{namespace: test, pod: {pod}}}\n"
            )
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [alerts.yaml]\n\
         scrape_configs:\n  - job_name: koodrive-gateway\n    static_configs:\n{targets}"
    );
    let prometheus = Prometheus::start(&config, &[("alerts.yaml", rules_with_short_for())]).await;
    let every = format!(
        r#"count(up{{job="koodrive-gateway"}} == 1) == {}"#,
        gateways.len()
    );
    let scraped = prometheus.wait_for(&every).await;
    assert!(scraped, "every gateway scraped:\n{}", prometheus.log());
    prometheus
}

/// The alert rules as the test's Prometheus loads them: every `for:` cut to 1s (the real
/// durations are covered by `promtool test rules`), expressions unchanged.
pub(super) fn rules_with_short_for() -> String {
    let mut cut = 0;
    let text: Vec<String> = read(ALERTS)
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                cut += 1;
                format!("{}for: 1s", &line[..line.len() - line.trim_start().len()])
            }
            None => line.to_owned(),
        })
        .collect();
    assert_eq!(cut, alert_rules().len(), "one `for:` per alert");
    text.join("\n")
}

fn finite(sample: &Json) -> bool {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Firing alerts as (name, pod).
pub(super) fn firing(alerts: &[Json]) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
            (label("alertname"), label("pod"))
        })
        .collect()
}

/// The panels whose query, as Grafana sends it, has no finite sample: (title, query, result).
/// The panels still without data after up to 20 s of scrapes (none, when all have data).
pub(super) async fn panels_still_without_data(
    prometheus: &Prometheus,
    queries: &[(String, String)],
) -> Vec<(String, String, Vec<Json>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let empty = panels_without_data(prometheus, queries).await;
        if empty.is_empty() || Instant::now() >= deadline {
            return empty;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn panels_without_data(
    prometheus: &Prometheus,
    queries: &[(String, String)],
) -> Vec<(String, String, Vec<Json>)> {
    let mut empty = Vec::new();
    for (title, expr) in queries {
        let expr = as_grafana_sends(expr);
        let result = prometheus.query(&expr).await;
        if !result.iter().any(finite) {
            empty.push((title.clone(), expr, result));
        }
    }
    empty
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_and_outage_alerts_work_on_a_real_prometheus() {
    let started = Instant::now();
    // Installed (when missing) before anything here runs: an install takes a while.
    packages::require("prometheus", "prometheus");
    let koodrive = FaultServer::start(Fault::Healthy).await;
    let overlay = r#"
        [upstream]
        timeout = "2s"
        connect_timeout = "1s"
        breaker_failures = 3
        breaker_cooldown = "1s"
        throttle_cooldown = "60s"
        [cache]
        ttl = "2s"
        stale_while_revalidate = "0s"
        stale_if_error = "5m"
    "#;
    // Two sidecars: one driven, one idle (its series exist, at 0, from the start).
    let driven = TestGateway::for_mock_url(&koodrive.url(), overlay).await;
    let idle = TestGateway::for_mock_url(&koodrive.url(), overlay).await;
    let prometheus = scraping(&[
        (driven.running().admin_addr, "gateway-0"),
        (idle.running().admin_addr, "gateway-1"),
    ])
    .await;

    // Healthy KooDrive: a write, five misses, fifteen hits, a bad query.
    assert_eq!(
        driven
            .client
            .post_with(TASK_CREATE, &[], r#"{"taskName":"t","taskType":0}"#)
            .await
            .status,
        200
    );
    for page in 1..=5 {
        for _ in 0..4 {
            let answer = driven
                .client
                .get(&format!("{TASK_LIST}?pageSize={page}"))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
    }
    assert_eq!(
        driven
            .client
            .get(&format!("{TASK_LIST}?pageSize=0"))
            .await
            .status,
        400
    );
    // (A loaded machine may let a page expire between its requests: then it is fetched again.)
    let hits = driven.metrics().await["koodrive_gateway_cache_hits_total"];
    assert!(hits >= 1.0, "no cache hits");
    let seen = prometheus
        .wait_for(&format!(
            r#"koodrive_gateway_cache_hits_total{{pod="gateway-0"}} >= {hits}"#
        ))
        .await;
    assert!(seen, "Prometheus saw the {hits} hits");

    // KooDrive goes away: connections refused. Cached page 1 goes stale (2 s) and is served
    // stale-if-error; new pages fail, three failures open the breaker, and each probe after its
    // 1 s cooldown fails again. Bounded: at most 40 s of four requests a second.
    koodrive.set(Fault::Refused).await;
    let outage = Instant::now();
    let mut fired = BTreeSet::new();
    let mut stale_served = false;
    let mut n = 0;
    while outage.elapsed() < Duration::from_secs(40) {
        n += 1;
        let stale = driven.client.get(&format!("{TASK_LIST}?pageSize=1")).await;
        assert_eq!(stale.status, 200, "{}", stale.text());
        stale_served |= stale
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("stale-if-error"));
        let fresh = driven
            .client
            .get(&format!("{TASK_LIST}?pageSize={}", 10 + n % 90))
            .await;
        assert!(
            matches!(fresh.status.as_u16(), 502 | 503),
            "{} {}",
            fresh.status,
            fresh.text()
        );
        if n % 4 == 0 {
            fired = firing(&prometheus.alerts().await);
            if OUTAGE_ALERTS
                .iter()
                .all(|a| fired.contains(&(a.to_string(), "gateway-0".into())))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(stale_served, "the cached page was served stale-if-error");
    for alert in OUTAGE_ALERTS {
        assert!(
            fired.contains(&(alert.to_string(), "gateway-0".into())),
            "{alert} did not fire for the driven gateway; firing: {fired:?}\n{:#?}",
            prometheus.alerts().await
        );
    }
    assert!(
        fired.iter().all(|(_, pod)| pod == "gateway-0"),
        "the idle gateway fired nothing: {fired:?}"
    );

    // KooDrive comes back throttling (APIG.0308): the driven gateway counts the throttle and
    // backs off, and Prometheus sees both (the budget panels' series). Bounded: 40 tries.
    koodrive.set(Fault::ApigThrottle).await;
    for _ in 0..40 {
        driven
            .client
            .get(&format!("{TASK_LIST}?pageSize=99&status=1"))
            .await;
        if driven.metrics().await["koodrive_gateway_budget_cooldown_active"] == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cooling = prometheus
        .wait_for(r#"koodrive_gateway_budget_cooldown_active{pod="gateway-0"} == 1"#)
        .await;
    assert!(cooling, "Prometheus saw the cooldown");
    let throttled = prometheus
        .wait_for(r#"sum(koodrive_gateway_upstream_throttles_total{pod="gateway-0"}) >= 1"#)
        .await;
    assert!(throttled, "Prometheus saw the throttle");
    let budget_panels = [
        "budget_tokens",
        "budget_refused_total",
        "upstream_throttles_total",
    ];
    // The fleet's panels need a fleet (`fleet_prometheus.rs`): these sidecars run alone.
    let queries: Vec<_> = dashboard_queries()
        .into_iter()
        .filter(|(_, expr)| !is_fleet_query(expr))
        .collect();
    for metric in budget_panels.map(|m| format!("koodrive_gateway_{m}")) {
        assert!(
            queries.iter().any(|(_, q)| q.contains(&metric)),
            "a panel of {metric}"
        );
    }

    // Every panel's query, as Grafana sends it, returns data: at least one finite sample.
    let empty = panels_still_without_data(&prometheus, &queries).await;
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    // The dashboard's variables list the pods and namespaces from build_info's labels.
    let pods = prometheus.query("koodrive_gateway_build_info").await;
    let pods: BTreeSet<_> = pods
        .iter()
        .map(|s| {
            (
                s["metric"]["namespace"].to_string(),
                s["metric"]["pod"].to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<_> = ["gateway-0", "gateway-1"]
        .map(|pod| (r#""test""#.to_owned(), format!("{pod:?}")))
        .into();
    assert_eq!(pods, expected);
    println!("the real-Prometheus test took {:?}", started.elapsed());
}
