//! `--demo --fleet N`: N gateways sharing one Redis in front of the embedded mock, so that a write
//! through one gateway is seen through another. The Redis is a `redis-server` found on `PATH`,
//! started on a free loopback port without persistence and stopped when the demo exits; the
//! fleet key is generated at start and lives in a private scratch directory removed at exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use koodrive_gateway::config::Config;
use koodrive_gateway::{gateway, telemetry};

use crate::{demo_config, demo_table, Signals};

/// The most gateways one demo starts.
pub const MAX_FLEET: u16 = 16;

/// How long the demo waits for Redis to answer, and then for every gateway's fleet mode.
const START_WAIT: Duration = Duration::from_secs(10);

/// Runs the fleet demo until SIGTERM or SIGINT, then drains every gateway and stops Redis.
pub async fn run(path: Option<PathBuf>, size: u16, signals: &mut Signals) -> anyhow::Result<()> {
    let (base, mock) = demo_config(path.clone()).await?;
    let scratch = Scratch::create()?;
    let key_file = scratch.0.join("fleet-key");
    write_private(&key_file, &hex::encode(random_bytes()?))?;
    let redis = Redis::start(&scratch.0).await?;
    let mut configs = Vec::new();
    for i in 0..size {
        let mut layered = demo_table(path.as_deref(), mock.addr())?;
        let server = table(&mut layered.table, "server");
        server.insert("listen".into(), nth(base.server.listen, i).into());
        server.insert(
            "admin_listen".into(),
            nth(base.server.admin_listen, i).into(),
        );
        let fleet = table(&mut layered.table, "fleet");
        fleet.insert("redis_url".into(), redis.url().into());
        fleet.insert("key_file".into(), key_file.display().to_string().into());
        fleet.remove("redis_password_file");
        fleet.remove("ca_file");
        configs.push(Config::from_layered(layered).context("invalid demo config")?);
    }
    let telemetry =
        telemetry::init(&base.log, &base.telemetry).context("cannot set up telemetry")?;
    let mut fleet = Vec::new();
    for config in configs {
        fleet.push(
            gateway::run(config)
                .await
                .context("cannot start the gateway")?,
        );
    }
    for running in &fleet {
        wait_fleet_up(running).await?;
    }
    print_banner(&fleet, &redis, mock.addr());
    signals.stop().await;
    for running in &fleet {
        running.shutdown();
    }
    for running in fleet {
        running.wait().await;
    }
    telemetry.shutdown().await;
    drop(redis);
    drop(scratch);
    Ok(())
}

fn print_banner(fleet: &[gateway::Running], redis: &Redis, mock: SocketAddr) {
    let list = "/koodrive/ose/v1/task/list?taskType=0&pageSize=1";
    let (first, second) = (fleet[0].addr, fleet[fleet.len().min(2) - 1].addr);
    println!();
    println!(
        "koodrive-gateway demo fleet: {} gateways sharing {} (redis-server, stopped at exit)",
        fleet.len(),
        redis.url()
    );
    for (i, running) in fleet.iter().enumerate() {
        println!(
            "gateway {} on http://{}, admin on http://{}",
            i + 1,
            running.addr,
            running.admin_addr
        );
    }
    println!("mock KooDrive on http://{mock}");
    println!("try:  curl -s 'http://{second}{list}'");
    println!(
        "      curl -s -X POST 'http://{first}/koodrive/ose/v1/task/create' \
         -d '{{\"taskName\":\"fleet-demo\",\"taskType\":0}}'"
    );
    println!("      curl -s 'http://{second}{list}'");
    println!("(the task created through gateway 1 is first in gateway 2's list at once)");
    println!();
}

/// The `i`-th gateway's address: the configured one plus `i`, or an ephemeral port for each
/// when the configured port is 0.
fn nth(addr: SocketAddr, i: u16) -> String {
    match addr.port() {
        0 => addr.to_string(),
        port => SocketAddr::new(addr.ip(), port.saturating_add(i)).to_string(),
    }
}

fn table<'a>(root: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let value = root
        .entry(name)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !value.is_table() {
        *value = toml::Value::Table(toml::Table::new());
    }
    match value {
        toml::Value::Table(table) => table,
        _ => unreachable!("replaced by a table above"),
    }
}

/// 32 bytes from the system's CSPRNG (through the TLS stack's `ring` provider): the fleet key
/// of this demo run.
fn random_bytes() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(bytes)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write the fleet key {}", path.display()))
}

/// A private directory for the fleet key and Redis's working directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "koodrive-gateway-demo-fleet-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo's `redis-server`: killed and waited for when dropped (at exit, or when the demo
/// fails to start).
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(dir: &Path) -> anyhow::Result<Redis> {
        let binary = on_path("redis-server").context(
            "--demo --fleet needs `redis-server` on PATH: install it with \
             `apt-get install -y redis-server` (Debian/Ubuntu, as root), then try again",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + START_WAIT;
        while !redis.answers().await {
            if let Some(status) = redis.child.try_wait()? {
                anyhow::bail!("redis-server exited at start ({status})");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn answers(&self) -> bool {
        let ping = async {
            let client = redis::Client::open(self.url()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        let reply = tokio::time::timeout(Duration::from_secs(1), ping).await;
        matches!(reply, Ok(Some(pong)) if pong == "PONG")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Waits until a gateway's fleet mode is up, so that the banner's commands work as printed.
async fn wait_fleet_up(running: &gateway::Running) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_WAIT;
    while !running.fleet_up() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fleet mode did not come up on the gateway with admin {}",
            running.admin_addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
