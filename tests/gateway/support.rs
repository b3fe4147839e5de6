//! Test support: a recording, fault-injecting mock KooDrive and a gateway started per test, both
//! on 127.0.0.1:0, with real HTTP between them. Every network await is bounded.

pub mod client;
pub mod packages;
pub mod prometheus;
pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub use client::{Client, TestResponse};
// The one mock KooDrive (crates/koodrive-mock), under the names the tests use.
pub use koodrive_mock::faults;
pub use koodrive_mock::recording as mock;
pub use koodrive_mock::{Mock, Recorded, Reply};

use koodrive_gateway::config::Config;
use koodrive_gateway::gateway::{self, Running};

/// Upper bound on any single network wait in the tests: generous for a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const USER_ID: &str = "1505084218764547200";
pub const APP_ID: &str = "test-app";
pub const APP_SECRET: &str = "test-app-secret";
pub const TASK_LIST: &str = "/koodrive/ose/v1/task/list";
/// A task write: the path the tests POST to.
pub const TASK_CREATE: &str = "/koodrive/ose/v1/task/create";

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The base test config (app_signature mode) pointed at `upstream`, with `overlay` TOML merged
/// over it key by key.
pub fn config(upstream: &str, overlay: &str) -> Config {
    let base = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        shutdown_grace = "5s"
        [upstream]
        url = "{upstream}"
        connect_timeout = "2s"
        timeout = "5s"
        [auth]
        mode = "app_signature"
        user_id = "{USER_ID}"
        app_id = "{APP_ID}"
        app_secret = "{APP_SECRET}"
        [log]
        format = "json"
        "#
    );
    let mut table: toml::Table = toml::from_str(&base).unwrap();
    let overlay: toml::Table = toml::from_str(overlay).unwrap();
    merge(&mut table, overlay);
    Config::from_table(table).unwrap()
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A gateway serving in this test's runtime; stopped when dropped.
pub struct TestGateway {
    running: Option<Running>,
    pub client: Client,
    pub admin: Client,
}

impl TestGateway {
    pub async fn start(config: Config) -> TestGateway {
        let running = within("gateway start", gateway::run(config)).await.unwrap();
        let client = Client::new(running.addr);
        let admin = Client::new(running.admin_addr);
        TestGateway {
            running: Some(running),
            client,
            admin,
        }
    }

    /// A gateway in front of `mock`, with `overlay` over the base config.
    pub async fn for_mock(mock: &Mock, overlay: &str) -> TestGateway {
        TestGateway::for_mock_url(&mock.url(), overlay).await
    }

    pub async fn for_mock_url(url: &str, overlay: &str) -> TestGateway {
        TestGateway::start(config(url, overlay)).await
    }

    /// `/metrics` as `name{labels}` -> value, from the text exposition.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let response = self.admin.get("/metrics").await;
        assert_eq!(response.status, 200);
        assert!(response.header("content-type").contains("text"));
        response
            .text()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Starts a graceful shutdown and returns the future that completes when it is over.
    pub fn shutdown(&mut self) -> impl Future<Output = ()> {
        let running = self.running.take().unwrap();
        running.shutdown();
        running.wait()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}

/// Sends raw bytes to the gateway and reads until it closes the connection (or `within` gives up).
pub async fn exchange(gw: &TestGateway, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    stream.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = within("the answer", stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The first line of a raw answer.
pub fn status_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
