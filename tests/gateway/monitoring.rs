//! `deploy/monitoring/` works: the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), the Kubernetes scrape set-up points at the admin `/metrics`, and a real
//! Prometheus scraping gateways while KooDrive goes down answers every dashboard panel's query
//! and fires the outage alerts. promtool and Prometheus come from Debian's `prometheus`,
//! installed when missing (`support::packages`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::support::faults::{Fault, FaultServer};
use crate::support::packages;
use crate::support::prometheus::Prometheus;
use crate::support::{Mock, TestGateway, TASK_CREATE, TASK_LIST};

mod fleet_prometheus;
mod kubernetes;
mod real_prometheus;

const ALERTS: &str = "deploy/monitoring/alerts.yaml";
/// The promtool unit test files of alerts.yaml: the single-sidecar alerts, the fleet's.
const ALERT_TESTS: [&str; 2] = ["alerts.test.yaml", "fleet-alerts.test.yaml"];
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

/// A query of the fleet's panels, which only a fleet (gateways sharing a Redis) fills.
fn is_fleet_query(expr: &str) -> bool {
    expr.contains("koodrive_gateway_fleet_")
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
    promtool(&[&["test", "rules"][..], &ALERT_TESTS[..]].concat());
}

/// promtool passes a test file that leaves an alert out: every alert must be shown both firing
/// and not firing.
#[test]
fn every_alert_has_unit_tests_firing_and_not_firing() {
    let files: Vec<Yaml> = ALERT_TESTS
        .iter()
        .map(|file| yaml(&format!("deploy/monitoring/{file}")))
        .collect();
    let cases: Vec<&Yaml> = files
        .iter()
        .flat_map(|tests| tests["tests"].as_sequence().expect("tests"))
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
