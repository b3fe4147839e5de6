//! A real Prometheus (Debian's `prometheus`, installed when missing) on 127.0.0.1, with its own
//! config, rules and storage in a scratch directory, and its HTTP API. Killed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{packages, Client, PATIENCE};

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub client: Client,
}

impl Prometheus {
    /// Starts Prometheus with `config` (its `rule_files` name files in `files`, written beside
    /// it) and waits until it is ready.
    pub async fn start(config: &str, files: &[(&str, String)]) -> Prometheus {
        let binary = packages::require("prometheus", "prometheus");
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kdgw-prometheus-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        // A free port, released for Prometheus to bind: another process could take it in
        // between, so a start that fails is tried again on another.
        for _ in 0..3 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(&binary)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut prometheus = Prometheus {
                child,
                dir: dir.clone(),
                client: Client::new(addr),
            };
            if prometheus.ready(addr).await {
                return prometheus;
            }
            let _ = prometheus.child.kill();
            let _ = prometheus.child.wait();
            std::mem::forget(prometheus);
        }
        panic!("Prometheus did not start:\n{}", log_of(&dir));
    }

    /// Polls `/-/ready`; false if the process exits first.
    async fn ready(&mut self, addr: SocketAddr) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let connected =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await;
            if matches!(connected, Ok(Ok(_))) && self.client.get("/-/ready").await.status == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Prometheus not ready in {PATIENCE:?}:\n{}",
            log_of(&self.dir)
        );
    }

    /// An instant query's result (`data.result`), or an error naming the query.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let response = self
            .client
            .get(&format!("/api/v1/query?query={encoded}"))
            .await;
        let body = response.json();
        assert_eq!(response.status, 200, "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{expr}: no result in {body}"))
    }

    /// Polls `expr` twice a second until its result is not empty; false if it still is after
    /// 20 s.
    pub async fn wait_for(&self, expr: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.query(expr).await.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The alerts Prometheus holds (pending and firing).
    pub async fn alerts(&self) -> Vec<Value> {
        let body = self.client.get("/api/v1/alerts").await.json();
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Prometheus's own log so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        log_of(&self.dir)
    }
}

fn log_of(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
