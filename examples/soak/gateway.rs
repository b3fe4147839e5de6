//! The gateway process: config, start, readiness, SIGTERM; its log and RSS read afterwards.

use super::*;

pub(crate) struct Gateway {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) log: PathBuf,
}

impl Gateway {
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        upstream: SocketAddr,
    ) -> anyhow::Result<Gateway> {
        let addr = free_port().await?;
        let admin = free_port().await?;
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "{addr}"
admin_listen = "{admin}"
shutdown_grace = "5s"

[upstream]
url = "http://{upstream}"
connect_timeout = "1s"
timeout = "{}s"

[auth]
mode = "app_signature"
user_id = "1505084218764547200"
app_id = "demo-app"
app_secret = "demo-app-secret"
language = "en-US"

[cache]
ttl = "2s"
stale_while_revalidate = "2s"
stale_if_error = "30s"

[log]
format = "json"
"#,
                UPSTREAM_TIMEOUT.as_secs()
            ),
        )?;
        let log = dir.join("gateway.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("gateway exited at once")?;
        // For bench/soak.sh's cleanup, should this process die without stopping the gateway.
        std::fs::write(dir.join("gateway.pid"), pid.to_string())?;
        let mut gateway = Gateway {
            child,
            pid,
            addr,
            admin,
            log,
        };
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    pub(crate) async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let url = format!("http://{}/readyz", self.admin);
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait()? {
                bail!("gateway exited: {status}; log: {}", self.log.display());
            }
            let request = Request::get(&url).body(Full::new(Bytes::new()))?;
            let ready = tokio::time::timeout(Duration::from_secs(1), client.request(request));
            if let Ok(Ok(response)) = ready.await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("gateway not ready after 15 s; log: {}", self.log.display())
    }

    /// SIGTERM, then how it exited and how long that took (SIGKILL after 15 s).
    pub(crate) async fn stop(&mut self) -> String {
        let asked = Instant::now();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            return format!("could not send SIGTERM: {term:?}");
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) => format!(
                "{status} {:.2} s after SIGTERM",
                asked.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                "still running 15 s after SIGTERM: killed".to_owned()
            }
        }
    }
}

pub(crate) async fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

/// Gateway log lines counted by level and message (JSON lines; anything else counted as is).
pub(crate) fn summarize_log(path: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let label = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                let level = v.get("level").and_then(|l| l.as_str()).unwrap_or("?");
                let message = v
                    .pointer("/fields/message")
                    .or_else(|| v.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("?");
                let message: String = message.chars().take(90).collect();
                format!("{level} {message}")
            }
            Err(_) => format!("raw {}", line.chars().take(90).collect::<String>()),
        };
        *out.entry(label).or_default() += 1;
    }
    out
}

pub(crate) fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
