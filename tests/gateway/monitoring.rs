//! `deploy/monitoring/` works: the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), the Kubernetes scrape set-up points at the admin `/metrics`, and a real
//! Prometheus scraping gateways while KooDrive goes down answers every dashboard panel's query
//! and fires the outage alerts. promtool and Prometheus come from Debian's `prometheus`,
//! installed when missing (`support::packages`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::support::faults::{Fault, FaultServer};
use crate::support::packages;
use crate::support::prometheus::Prometheus;
use crate::support::{Mock, TestGateway, TASK_LIST};

const ALERTS: &str = "deploy/monitoring/alerts.yaml";
const ALERT_TESTS: &str = "deploy/monitoring/alerts.test.yaml";
const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";

/// The alerts a KooDrive outage fires: calls failing, the breaker opening, stale pages served.
const OUTAGE_ALERTS: [&str; 3] = [
    "KooDriveUnreachable",
    "KooDriveGatewayBreakerOpen",
    "KooDriveGatewayServingStaleIfError",
];

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    serde_yaml::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The alerting rules of alerts.yaml.
fn alert_rules() -> Vec<Yaml> {
    let rules = yaml(ALERTS);
    let groups = rules["groups"].as_sequence().expect("groups");
    let alerts: Vec<Yaml> = groups
        .iter()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|rule| rule["alert"].is_string())
        .collect();
    assert!(!alerts.is_empty(), "no alerts in {ALERTS}");
    alerts
}

/// Every panel query of the dashboard: (panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Json = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            queries.push((title.clone(), expr.to_owned()));
        }
        if panel["type"] != "row" {
            assert!(
                panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {title} has no query"
            );
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

/// A panel query as Grafana sends it with every sidecar selected and a one-minute rate window
/// (the test's traffic all falls within it).
fn as_grafana_sends(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$namespace", ".*")
        .replace("$pod", ".*");
    assert!(!expr.contains('$'), "a variable left in {expr}");
    expr
}

/// Runs promtool in deploy/monitoring; fails with its output unless it succeeds.
fn promtool(args: &[&str]) {
    let promtool = packages::require("promtool", "prometheus");
    let output = Command::new(&promtool)
        .args(args)
        .current_dir(repo_path("deploy/monitoring"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    promtool(&["check", "rules", "alerts.yaml"]);
    promtool(&["test", "rules", "alerts.test.yaml"]);
}

/// promtool passes a test file that leaves an alert out: every alert must be shown both firing
/// and not firing.
#[test]
fn every_alert_has_unit_tests_firing_and_not_firing() {
    let tests = yaml(ALERT_TESTS);
    let cases: Vec<&Yaml> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let of_alert: Vec<_> = cases
            .iter()
            .filter(|case| case["alertname"].as_str() == Some(name))
            .collect();
        let firing = |case: &&&Yaml| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty())
        };
        assert!(
            of_alert.iter().any(firing),
            "{name}: no test where it fires"
        );
        assert!(
            of_alert.iter().any(|case| !firing(case)),
            "{name}: no test where it stays quiet"
        );
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity critical or warning"
        );
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name}: no {key}");
        }
    }
}

/// Metric names in an expression, as the gateway exports them (a histogram's series by family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("koodrive_gateway_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// A typo in a metric name passes promtool (an unknown series is just empty): every name the
/// alerts and the dashboard use is one a fresh gateway exports.
#[tokio::test]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let mock = Mock::ok().await;
    let gw = TestGateway::for_mock(&mock, "").await;
    let exported: BTreeSet<String> = gw
        .metrics()
        .await
        .into_keys()
        .map(|series| series.split('{').next().unwrap_or_default().to_owned())
        .collect();
    let mut used = BTreeSet::new();
    for rule in alert_rules() {
        used.extend(metric_names(rule["expr"].as_str().expect("expr")));
    }
    for (_, expr) in dashboard_queries() {
        used.extend(metric_names(&expr));
    }
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}

/// Pods are scraped on the gateway's admin port at `/metrics`: the annotations the usual
/// `kubernetes-pods` job reads, and the PodMonitor, select the example Deployment's pods and name
/// its admin port.
#[test]
fn kubernetes_scrape_setup_points_at_the_admin_metrics() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let template = &deployment["spec"]["template"];
    let gateway = template["spec"]["containers"]
        .as_sequence()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "koodrive-gateway")
        .expect("the gateway container");
    let admin = gateway["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("the admin port");
    let admin_port = admin["containerPort"].as_u64().expect("containerPort");

    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin_port.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let monitor = yaml("deploy/monitoring/podmonitor.yaml");
    assert_eq!(monitor["kind"], "PodMonitor");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &template["metadata"]["labels"][key], value,
            "the PodMonitor selects the Deployment's pods ({key:?})"
        );
    }
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .expect("podMetricsEndpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "admin");
    assert_eq!(endpoints[0]["path"], "/metrics");
}

/// The alert rules as the test's Prometheus loads them: every `for:` cut to 1s (the real
/// durations are covered by `promtool test rules`), expressions unchanged.
fn rules_with_short_for() -> String {
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
fn firing(alerts: &[Json]) -> BTreeSet<(String, String)> {
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
        [cache]
        ttl = "2s"
        stale_while_revalidate = "0s"
        stale_if_error = "5m"
    "#;
    // Two sidecars: one driven, one idle (its series exist, at 0, from the start).
    let driven = TestGateway::for_mock_url(&koodrive.url(), overlay).await;
    let idle = TestGateway::for_mock_url(&koodrive.url(), overlay).await;
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yaml]
scrape_configs:
  - job_name: koodrive-gateway
    static_configs:
      # The labels the Kubernetes scrape set-up gives each pod.
      - targets: ["{}"]
        labels: {{namespace: test, pod: gateway-0}}
      - targets: ["{}"]
        labels: {{namespace: test, pod: gateway-1}}
"#,
        driven.running().admin_addr,
        idle.running().admin_addr
    );
    let prometheus = Prometheus::start(&config, &[("alerts.yaml", rules_with_short_for())]).await;
    let scraped = prometheus
        .wait_for(r#"count(up{job="koodrive-gateway"} == 1) == 2"#)
        .await;
    assert!(scraped, "both gateways scraped:\n{}", prometheus.log());

    // Healthy KooDrive: a write, five misses, fifteen hits, a bad query.
    let write = driven
        .client
        .request(Method::POST, "/koodrive/ose/v1/task/create")
        .body(Full::new(Bytes::from(r#"{"taskName":"t","taskType":0}"#)))
        .unwrap();
    assert_eq!(driven.client.send(write).await.status, 200);
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

    // Every panel's query, as Grafana sends it, returns data: at least one finite sample.
    let queries = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(20);
    let empty = loop {
        let empty = panels_without_data(&prometheus, &queries).await;
        if empty.is_empty() || Instant::now() >= deadline {
            break empty;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
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
