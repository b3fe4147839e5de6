//! The Kubernetes scrape setup points at the gateway's admin metrics.

use super::*;

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
