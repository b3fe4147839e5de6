//! Binds the proxy and admin listeners and serves them until shutdown: what `main` and the
//! integration tests call. Shutdown stops accepting, flips readiness to 503, and lets requests in
//! flight finish within `server.shutdown_grace`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::admission::Admission;
use crate::auth::Auth;
use crate::budget::Budget;
use crate::cache::TaskListCache;
use crate::coalesce::Coalesced;
use crate::config::Config;
use crate::framing::{Framing, Guarded};
use crate::head_timeout::{Answer, Answered, Exchanges, HeadTimeout};
use crate::metrics::Metrics;
use crate::pipeline;
use crate::quota::Quota;
use crate::state::{Live, State};
use crate::upstream::{TlsSetupError, Upstream};

mod limits;

use limits::{builder, Limits};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream TLS setup failed")]
    Tls(#[from] TlsSetupError),
    /// The secret file's key and why it cannot be used.
    #[error("{0}")]
    Secret(String),
    #[error("fleet mode cannot start")]
    Fleet(#[from] crate::fleet::FleetError),
}

/// A started gateway: its bound addresses and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    state: Arc<State>,
    /// The config the process started with: what a reload cannot change is compared with it.
    started_with: Config,
}

impl Running {
    /// Applies a new, already validated config without dropping connections or the cache:
    /// credentials (and secret files), normalization rules, TTL and stale windows. Requests in
    /// flight finish with the config they started with. Listeners, upstream, limits, the admin
    /// token, the log format, telemetry and `[fleet]` need a restart: each reload whose file differs from the
    /// start there says so (it still does on the next reload, as the process still runs the old
    /// value).
    pub async fn reload(&self, config: &Config) -> Result<(), StartError> {
        let auth = Auth::new(&config.auth, &self.state.metrics)
            .await
            .map_err(StartError::Secret)?;
        let old = &self.started_with;
        let restart_only = [
            (
                "server",
                format!("{:?}", old.server) != format!("{:?}", config.server),
            ),
            (
                "upstream",
                format!("{:?}", old.upstream) != format!("{:?}", config.upstream),
            ),
            (
                "cache.max_bytes",
                old.cache.max_bytes != config.cache.max_bytes,
            ),
            ("admin.token", old.admin.token != config.admin.token),
            (
                "admin",
                (
                    old.admin.max_connections,
                    old.admin.idle_timeout,
                    old.admin.header_read_timeout,
                ) != (
                    config.admin.max_connections,
                    config.admin.idle_timeout,
                    config.admin.header_read_timeout,
                ),
            ),
            // The log level is reloaded (by the caller); the format and the exporter are set up
            // once, at start.
            ("log.format", old.log.format != config.log.format),
            (
                "telemetry",
                format!("{:?}", old.telemetry) != format!("{:?}", config.telemetry),
            ),
            ("fleet", old.fleet != config.fleet),
        ];
        for (section, changed) in restart_only {
            if changed {
                tracing::warn!(
                    section,
                    "changed in the config file: takes effect only after a restart"
                );
            }
        }
        self.state
            .live
            .store(Arc::new(Live::new(auth, config.normalize.clone())));
        self.state.cache.set_config(&config.cache);
        tracing::info!("config reloaded");
        Ok(())
    }

    /// Whether fleet mode is up: sharing through Redis, not fallen back (false without
    /// `[fleet]`).
    pub fn fleet_up(&self) -> bool {
        self.state.cache.fleet().is_some_and(|fleet| fleet.is_up())
    }

    /// Begins a graceful shutdown; `wait` returns when it is over.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "gateway task failed");
        }
    }
}

/// What every request shares, built from the config at start.
async fn shared_state(
    config: &Config,
    metrics: &Arc<Metrics>,
    cache: Arc<TaskListCache>,
) -> Result<Arc<State>, StartError> {
    Ok(Arc::new(State {
        upstream: match cache.fleet() {
            None => Upstream::new(&config.upstream, Arc::clone(metrics))?,
            // One budget and one cooldown for the whole fleet.
            Some(fleet) => {
                Upstream::new(&config.upstream, Arc::clone(metrics))?.with_quota(Quota::for_fleet(
                    Arc::clone(fleet),
                    config.upstream.rate_limit,
                    config.upstream.throttle_cooldown,
                    Arc::clone(metrics),
                ))
            }
        },
        live: ArcSwap::from_pointee(Live::new(
            Auth::new(&config.auth, metrics)
                .await
                .map_err(StartError::Secret)?,
            config.normalize.clone(),
        )),
        max_signed_body: config.upstream.max_signed_body,
        max_body: config.server.max_body,
        admission: Admission::new(
            config.server.max_in_flight,
            metrics.in_flight.clone(),
            metrics.shed.clone(),
        ),
        budget: Budget::new(
            config.server.max_buffered_bytes,
            metrics.buffered_bytes.clone(),
        ),
        cache,
        metrics: Arc::clone(metrics),
    }))
}

pub async fn run(config: Config) -> Result<Running, StartError> {
    let listener = bind(config.server.listen)?;
    let admin_listener = bind(config.server.admin_listen)?;
    let addr = local_addr(&listener, config.server.listen)?;
    let admin_addr = local_addr(&admin_listener, config.server.admin_listen)?;

    let metrics = Metrics::new();
    let cache = Arc::new(match &config.fleet {
        None => TaskListCache::new(&config.cache),
        Some(fleet) => {
            let lock_ttl = config.upstream.timeout;
            let metrics = Arc::clone(&metrics);
            TaskListCache::with_fleet(&config.cache, fleet.clone(), metrics, lock_ttl).await?
        }
    });
    let state = shared_state(&config, &metrics, Arc::clone(&cache)).await?;
    let ready = Arc::new(AtomicBool::new(true));
    let admin = Arc::new(Admin {
        ready: Arc::clone(&ready),
        cache,
        token: config.admin.token.clone(),
        metrics: Arc::clone(&metrics),
    });
    let proxy_limits = Limits::proxy(&config.server, &metrics);
    let admin_limits = Limits::admin(&config, &metrics);

    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = config.server.clone();
    let serving = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let (admin_stop, admin_stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(serve(
            admin_listener,
            builder(&server, admin_limits.timeouts),
            admin_limits,
            admin_stop_rx,
            Duration::from_secs(1),
            move |req, answer: Answer| {
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(answer.with(admin::handle(&admin, req).await)) }
            },
        ));
        let mut stop = shutdown_rx.clone();
        let proxy = serve(
            listener,
            builder(&server, proxy_limits.timeouts),
            proxy_limits,
            shutdown_rx,
            server.shutdown_grace,
            move |req, answer: Answer| {
                let state = Arc::clone(&serving);
                async move { Ok::<_, Infallible>(answer.with(pipeline::handle(state, req).await)) }
            },
        );
        tokio::pin!(proxy);
        // `proxy` only ends once it has seen the stop itself, which with no connection open can
        // happen in the very poll that delivers it: either way, turn unready and say so.
        let drained = tokio::select! {
            biased;
            () = stopped(&mut stop) => false,
            () = &mut proxy => true,
        };
        ready.store(false, Ordering::SeqCst);
        tracing::info!("shutting down: draining requests in flight");
        if !drained {
            proxy.await;
        }
        admin_stop.send_replace(true);
        let _ = admin_task.await;
        tracing::info!("shutdown complete");
    });
    tracing::info!(%addr, %admin_addr, "koodrive-gateway listening");
    Ok(Running {
        addr,
        admin_addr,
        shutdown,
        task,
        state,
        started_with: config,
    })
}

/// Connections the kernel completes and queues before the gateway accepts them (nginx uses 511,
/// the kernel caps it at `net.core.somaxconn`). tokio's `TcpListener::bind` listens with 128, as
/// the standard library does: a burst of connects that outruns the accept loop by that many has
/// its SYNs dropped, and each dropped client waits a whole 1 s SYN retransmission.
const LISTEN_BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    // As `TcpListener::bind` does: a restarted gateway rebinds at once.
    socket
        .and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        })
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Accepts connections until `stop` turns true, then waits up to `grace` for them to finish.
/// `service` gets each request with its [`Answer`], which wraps the response: the header-read
/// timeout counts a request answered once hyper is done with that response's body.
async fn serve<S, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    service: S,
) where
    S: Fn(hyper::Request<hyper::body::Incoming>, Answer) -> F + Clone + Send + 'static,
    F: std::future::Future<
            Output = Result<hyper::Response<Answered<crate::body::Body>>, Infallible>,
        > + Send
        + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the cap: closed at once, before any of it is read (nginx's
                // worker_connections, Envoy's connection limit).
                let Some(open) = limits.admit() else {
                    limits.refused.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // Closed once it has waited too long for a request or a header block.
                let exchanges = Arc::new(Exchanges::default());
                let stream = HeadTimeout::new(stream, Arc::clone(&exchanges), limits.timeouts);
                // The guard reads request framing along the way; the service asks it about each
                // request, in order, and refuses the ambiguous one.
                let framing = Arc::new(Framing::default());
                let stream = Guarded::new(stream, Arc::clone(&framing), limits.max_head);
                // Answers computed in the same turn of the runtime go out together.
                let stream = Coalesced::new(stream);
                let service = service.clone();
                let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    if let Some(ambiguous) = framing.next() {
                        request.extensions_mut().insert(ambiguous);
                    }
                    service(request, exchanges.serve())
                });
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %error, "connection closed with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "shutdown grace elapsed; closing connections still open");
        }
    }
}

/// Resolves once the stop flag is true (or its sender is gone), holding no lock across awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
