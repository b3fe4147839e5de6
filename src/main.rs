//! Command line: parse, load and validate config (exiting non-zero before any port is bound when
//! it is bad), start, and drain on SIGTERM/SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use koodrive_gateway::config::{Config, ConfigError, Layered, SecretSource};
use koodrive_gateway::error::ErrorChain;
use koodrive_gateway::{gateway, telemetry, upstream};
use koodrive_mock::{MockAuth, MockKooDrive};

mod demo_fleet;

/// mimalloc keeps size classes apart: cached pages live long among short-lived request buffers,
/// and glibc's allocator fragments around them (RSS per cached 2 KB page fell from ~7.8 KB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The embedded demo config: the gateway on 127.0.0.1:8080, pointed at the embedded mock.
const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Caching sidecar gateway for the KooDrive Open API.
///
/// Every config key but normalize.rules can be overridden from the environment as
/// KOODRIVE_GATEWAY__SECTION__KEY,
/// e.g. KOODRIVE_GATEWAY__AUTH__APP_SECRET=... so that secrets need not sit in files.
/// SIGTERM or SIGINT drains requests in flight (within server.shutdown_grace) and exits 0; a second
/// one during the drain quits at once (exit 1).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML config file (see config/koodrive-gateway.toml).
    #[arg(long, env = "KOODRIVE_GATEWAY_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Start an embedded mock KooDrive on a loopback port and point the gateway at it. Without
    /// --config it uses the built-in demo config; with it, that config with the mock as upstream.
    #[arg(long)]
    demo: bool,

    /// With --demo: start N gateways sharing one Redis (a `redis-server` from PATH, on a free
    /// loopback port, stopped at exit) in front of the mock, ports counting up from the config's.
    #[arg(long, value_name = "N", requires = "demo",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(demo_fleet::MAX_FLEET)))]
    fleet: Option<u16>,

    /// Validate the config and exit: 0 when it is good, non-zero with the offending key otherwise.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = runtime().and_then(|runtime| {
        let outcome = runtime.block_on(run(cli));
        // After a forced quit, connections may still be open: they are dropped, not waited for.
        runtime.shutdown_background();
        outcome
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // An operator's error (no config, a bad one, a second stop signal) is one line with its
        // causes, never a backtrace: returning the error from main would print anyhow's whenever
        // RUST_BACKTRACE is set. Backtraces are for bugs, which panic.
        Err(error) => {
            eprintln!("koodrive-gateway: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One thread when the process may use one CPU (a sidecar's usual quota, or `taskset`): tokio's
/// single-threaded scheduler then does the same work without the multi-threaded one's
/// cross-thread bookkeeping. Otherwise one worker per CPU.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = match cpus {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Before the config is read, so that they show even when it turns out bad.
    for warning in koodrive_gateway::config::unread_variables() {
        eprintln!("koodrive-gateway: warning: {warning}");
    }
    let config_path = cli.config.clone();
    if cli.check_config {
        let path = cli.config.context("--check-config needs --config PATH")?;
        checked(Config::load(&path), &path).await?;
        println!("{}: ok", path.display());
        return Ok(());
    }
    let mut signals = Signals::register();
    if let Some(size) = cli.fleet {
        return demo_fleet::run(cli.config, size, &mut signals).await;
    }
    let (config, mock) = if cli.demo {
        let (config, mock) = demo_config(cli.config).await?;
        (config, Some(mock))
    } else {
        let path = cli
            .config
            .context("no config: pass --config PATH (or KOODRIVE_GATEWAY_CONFIG), or try --demo")?;
        (checked(Config::load(&path), &path).await?, None)
    };
    let telemetry =
        telemetry::init(&config.log, &config.telemetry).context("cannot set up telemetry")?;
    let running = gateway::run(config)
        .await
        .context("cannot start the gateway")?;
    if let Some(mock) = &mock {
        let url = format!(
            "http://{}/koodrive/ose/v1/task/list?taskType=0&pageSize=5",
            running.addr
        );
        println!();
        println!(
            "koodrive-gateway demo: gateway on http://{}, admin on http://{}",
            running.addr, running.admin_addr
        );
        println!("mock KooDrive on http://{}", mock.addr());
        println!("try:  curl -si '{url}'");
        println!();
    }
    // What a SIGHUP re-reads: the file, and in the demo, that file with the mock as upstream.
    let mock_addr = mock.as_ref().map(MockKooDrive::addr);
    let reload = config_path.map(|path| {
        move || match mock_addr {
            Some(addr) => Config::from_layered(demo_table(Some(&path), addr)?),
            None => Config::load(&path),
        }
    });
    serve_signals(&mut signals, &running, &telemetry.log, reload).await;
    running.shutdown();
    // A second SIGTERM or SIGINT during the drain quits at once (an operator's second Ctrl-C).
    let forced = tokio::select! {
        () = running.wait() => false,
        () = signals.stop() => true,
    };
    if forced {
        tracing::warn!("second stop signal during the drain: quitting without waiting for it");
        // Dropping the log writer flushes the lines queued so far, this one included.
        drop(telemetry);
        anyhow::bail!(
            "stopped by a second signal during the drain; requests in flight were cut off"
        );
    }
    // After the drain, so the last requests' spans are exported too.
    telemetry.shutdown().await;
    Ok(())
}

/// A loaded config whose files (secret, CA) are readable too, or the one error that says which
/// key is wrong: the same for `--check-config`, a start and `--demo --config`, and before any
/// port is bound.
async fn checked(
    config: Result<Config, ConfigError>,
    path: &std::path::Path,
) -> anyhow::Result<Config> {
    let invalid = || format!("invalid config {}", path.display());
    let config = config.with_context(invalid)?;
    config.check_files().await.with_context(invalid)?;
    upstream::check_ca_file(&config.upstream).with_context(invalid)?;
    Ok(config)
}

/// The signals the gateway answers, registered before it starts listening: until a handler is
/// registered, SIGHUP and SIGTERM keep their default action and kill the process, so a reload or a
/// stop sent as soon as the "listening" line appears would otherwise be a crash.
struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

/// What a signal asks for.
enum Asked {
    Reload,
    Shutdown,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                hangup: signal(SignalKind::hangup()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    #[cfg(unix)]
    async fn next(&mut self) -> Asked {
        async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(self.terminate.as_mut()) => Asked::Shutdown,
            () = recv(self.interrupt.as_mut()) => Asked::Shutdown,
            () = recv(self.hangup.as_mut()) => Asked::Reload,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Asked {
        let _ = tokio::signal::ctrl_c().await;
        Asked::Shutdown
    }

    /// The next SIGTERM or SIGINT; a SIGHUP meanwhile is ignored.
    async fn stop(&mut self) {
        while let Asked::Reload = self.next().await {}
    }
}

/// Waits for SIGTERM or SIGINT; on SIGHUP re-reads the config file and applies it, or keeps the
/// current one (and says why) when the new one is invalid.
async fn serve_signals(
    signals: &mut Signals,
    running: &gateway::Running,
    log: &telemetry::LogHandle,
    reload: Option<impl Fn() -> Result<Config, ConfigError>>,
) {
    loop {
        match signals.next().await {
            Asked::Shutdown => return,
            Asked::Reload => {}
        }
        let Some(reload) = &reload else {
            tracing::warn!("SIGHUP ignored: no config file to re-read");
            continue;
        };
        match reload() {
            Ok(config) => match running.reload(&config).await {
                Ok(()) => log.set_level(&config.log),
                Err(error) => {
                    tracing::error!(error = %ErrorChain(&error), "reload refused; keeping the current config")
                }
            },
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), "reload refused; keeping the current config")
            }
        }
    }
}

/// The demo's config before validation: the given file (or the built-in one) with the mock at
/// `mock_addr` as its upstream. A reload reads it the same way (the mock keeps the credentials it
/// started with).
fn demo_table(
    path: Option<&std::path::Path>,
    mock_addr: std::net::SocketAddr,
) -> Result<Layered, ConfigError> {
    let mut layered = match path {
        Some(path) => Config::layered(path, koodrive_gateway::config::overrides()?)?,
        None => Config::layered_str(DEMO_CONFIG, koodrive_gateway::config::overrides()?)?,
    };
    let upstream = layered
        .table
        .entry("upstream")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(upstream) = upstream.as_table_mut() {
        upstream.insert(
            "url".into(),
            toml::Value::String(format!("http://{mock_addr}")),
        );
    }
    Ok(layered)
}

/// The demo's config: the given file (or the built-in one) with the mock as its upstream, and the
/// mock accepting the credentials that config holds.
async fn demo_config(path: Option<PathBuf>) -> anyhow::Result<(Config, MockKooDrive)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = demo_table(path.as_deref(), listener.local_addr()?).and_then(Config::from_layered);
    let config = match &path {
        Some(path) => checked(config, path).await?,
        None => config.context("invalid demo config")?,
    };
    let secret = match &config.auth.secret {
        SecretSource::Inline(secret) => secret.expose().to_owned(),
        SecretSource::File(path) => koodrive_gateway::secret::read_file(path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.auth.secret_key()))?
            .expose()
            .to_owned(),
    };
    // The token as the gateway sends it, its scheme taken off as the mock reads it (a token
    // written `Bearer+tok` or `Bearer tok` goes out as `Bearer tok`), and as written.
    let sent = koodrive_gateway::auth::bearer(&secret);
    let sent = sent.strip_prefix("Bearer ").unwrap_or(&sent).to_owned();
    let auth = MockAuth {
        app_id: config.auth.app_id.clone(),
        app_secret: secret.clone(),
        tokens: vec![secret, sent],
    };
    let mock = MockKooDrive::start(listener, auth).await?;
    Ok((config, mock))
}
