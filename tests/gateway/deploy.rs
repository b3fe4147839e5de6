//! The deployment files under `deploy/` agree with the gateway they deploy: every config they ship
//! passes the gateway's own validation, and the ports, probe paths, base URLs and stop timeouts
//! around it point at what that config actually says.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use koodrive_gateway::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

mod container;
mod dockerfile;
mod fleet_compose;
mod kubernetes;
mod systemd;

const APP_SECRET_ENV: &str = "KOODRIVE_GATEWAY__AUTH__APP_SECRET";
const ADMIN_TOKEN_ENV: &str = "KOODRIVE_GATEWAY__ADMIN__TOKEN";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|document| !document.is_null())
        .collect()
}

/// The secrets as an operator supplies them through the environment.
fn secret_env() -> Vec<(String, String)> {
    vec![
        (APP_SECRET_ENV.into(), "app-secret-from-env".into()),
        (ADMIN_TOKEN_ENV.into(), "admin-token-from-env".into()),
    ]
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value:?}"))
}

fn seq_of<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, got {value:?}"))
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no entry named {name}"))
}

fn port_of(url: &str) -> u16 {
    let uri: Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(
        matches!(uri.host(), Some("127.0.0.1" | "localhost")),
        "{url}: the app should reach its sidecar over loopback"
    );
    uri.port_u16()
        .unwrap_or_else(|| panic!("{url}: no explicit port"))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}
