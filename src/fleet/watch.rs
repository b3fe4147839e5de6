//! The fleet's background task: connects to Redis (reading the password file at every
//! connect, so a rotated password is picked up), subscribes to the invalidation hints, and
//! checks the subscription every `fleet.heartbeat`. A lost subscription or a failed heartbeat
//! falls back to first-tier only; the next connect resumes fleet mode after making the bumps
//! that could not be made meanwhile, with the first tier dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, TlsCertificates};

use super::names::{parse_hint, Hint};
use super::{Fleet, Pending};
use crate::metrics::fleet::KindLabels;

/// A connect (TCP, TLS, AUTH and SUBSCRIBE) slower than this counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Fleet mode that falls back within this of resuming waits longer before the next resume
/// (each one drops the first tier): a Redis that answers PING but fails the calls (out of
/// memory, say) does not make the sidecar flap.
const SHORT_LIVED: Duration = Duration::from_secs(5);

/// The longest wait between resumes of a flapping fleet.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub async fn run(fleet: Weak<Fleet>) {
    let mut backoff = Duration::ZERO;
    loop {
        let Some(strong) = fleet.upgrade() else {
            return;
        };
        let heartbeat = strong.config.heartbeat;
        match connect(&strong).await {
            Ok((sink, stream)) => {
                if resume(&strong).await {
                    drop(strong);
                    let up_at = tokio::time::Instant::now();
                    listen(&fleet, sink, stream, heartbeat).await;
                    backoff = match up_at.elapsed() < SHORT_LIVED {
                        true => (backoff * 2).clamp(heartbeat, MAX_BACKOFF.max(heartbeat)),
                        false => Duration::ZERO,
                    };
                    tokio::time::sleep(backoff).await;
                } else {
                    drop(strong);
                }
            }
            Err(why) => {
                strong.metrics.fleet.error("connect");
                tracing::debug!(why, "fleet: cannot connect to Redis");
                drop(strong);
            }
        }
        tokio::time::sleep(heartbeat).await;
    }
}

async fn connect(fleet: &Fleet) -> Result<(PubSubSink, PubSubStream), String> {
    let mut info = fleet
        .config
        .redis_url
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("{:?}", e.kind()))?;
    if let Some(path) = &fleet.config.redis_password_file {
        let password = tokio::fs::read_to_string(path)
            .await
            .map_err(|_| "fleet.redis_password_file cannot be read".to_owned())?;
        info.redis.password = Some(password.trim().to_owned());
    }
    let client = match &fleet.config.ca_file {
        None => Client::open(info),
        Some(path) => {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|_| "fleet.ca_file cannot be read".to_owned())?;
            let certificates = TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(info, certificates)
        }
    }
    .map_err(|e| format!("{:?}", e.kind()))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(fleet.config.timeout.max(CONNECT_TIMEOUT));
    let connecting = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let pubsub = client.get_async_pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(fleet.names.channel()).await?;
        Ok::<_, redis::RedisError>((conn, sink, stream))
    };
    let (conn, sink, stream) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| "timed out".to_owned())?
        // The kind only: an error's text may quote what the server said about the password.
        .map_err(|e| format!("{:?}", e.kind()))?;
    store_connection(fleet, conn);
    Ok((sink, stream))
}

fn store_connection(fleet: &Fleet, conn: MultiplexedConnection) {
    fleet.conn.store(Some(Arc::new(conn)));
}

/// Makes the bumps writes left pending while Redis was away, then drops the first tier and
/// what was learned, and turns fleet mode on. False (still down) if a bump fails.
async fn resume(fleet: &Fleet) -> bool {
    let pending = std::mem::take(&mut *fleet.pending.lock().unwrap_or_else(|p| p.into_inner()));
    // Calls go through while `up` is false: made directly on the new connection.
    let Some(conn) = fleet.conn.load_full() else {
        return false;
    };
    let channel = fleet.names.channel();
    let mut bumps = Vec::new();
    // Another Redis server than the last one (restarted, or failed over to a replica that may
    // have missed the last bumps): every page it holds is moved out of reach at once.
    let run_id = server_run_id(&conn).await;
    let changed = {
        let mut last = fleet.run_id.lock().unwrap_or_else(|p| p.into_inner());
        let changed = last.is_some() && *last != run_id;
        *last = run_id;
        changed
    };
    if pending.epoch || changed {
        bumps.push((fleet.names.epoch(), super::names::EPOCH_HINT.to_owned()));
    }
    for user in &pending.users {
        bumps.push((fleet.names.generation(user), super::names::user_hint(user)));
    }
    for (key, hint) in &bumps {
        let mut conn = (*conn).clone();
        let bump = super::scripts::bump(key, super::clock_seed(), &channel, hint);
        let made = tokio::time::timeout(CONNECT_TIMEOUT, bump.invoke_async::<u64>(&mut conn)).await;
        if !matches!(made, Ok(Ok(_))) {
            fleet.metrics.fleet.error("invalidate");
            let mut left = fleet.pending.lock().unwrap_or_else(|p| p.into_inner());
            merge(&mut left, pending);
            return false;
        }
    }
    fleet.forget();
    (fleet.on_forget)();
    fleet.failures.store(0, Ordering::Relaxed);
    fleet.up.store(true, Ordering::Release);
    fleet.metrics.fleet.up.set(1);
    fleet.metrics.fleet.breaker_open.set(0);
    tracing::info!(
        redis = %fleet.config.redis_url,
        "fleet mode up: sharing the cache tier and invalidations through Redis"
    );
    true
}

/// The server's `run_id` (new at every start of a Redis process, so a failover changes it too).
async fn server_run_id(conn: &MultiplexedConnection) -> Option<String> {
    let mut conn = conn.clone();
    let mut command = redis::cmd("INFO");
    command.arg("server");
    let info = command.query_async::<String>(&mut conn);
    let info = tokio::time::timeout(CONNECT_TIMEOUT, info)
        .await
        .ok()?
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

fn merge(into: &mut Pending, from: Pending) {
    into.epoch |= from.epoch;
    into.users.extend(from.users);
}

/// Applies hints until the subscription is lost, a heartbeat fails, or the request path has
/// fallen back; then falls back (if it has not) and returns.
async fn listen(
    fleet: &Weak<Fleet>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { break "the Pub/Sub connection closed" };
                let Some(fleet) = fleet.upgrade() else { return };
                if let Ok(text) = message.get_payload::<String>() {
                    heard(&fleet, &text);
                }
            }
            _ = ticks.tick() => {
                let Some(strong) = fleet.upgrade() else { return };
                if !strong.is_up() {
                    break "Redis calls failed";
                }
                let wait = strong.config.heartbeat.max(strong.config.timeout);
                let ping = tokio::time::timeout(wait, sink.ping::<redis::Value>()).await;
                if !matches!(ping, Ok(Ok(_))) {
                    strong.metrics.fleet.error("heartbeat");
                    break "the Pub/Sub heartbeat failed";
                }
            }
        }
    };
    if let Some(fleet) = fleet.upgrade() {
        fleet.fall_back(why);
        fleet.conn.store(None);
    }
}

fn heard(fleet: &Fleet, text: &str) {
    let kind = match parse_hint(text) {
        Some(Hint::User(user, user_gen)) => {
            fleet.learn_user(user, user_gen);
            "user"
        }
        Some(Hint::Epoch(epoch)) => {
            fleet.learn_epoch(epoch);
            "all"
        }
        Some(Hint::Cooldown(millis)) => {
            fleet.heard_cooldown_of(Duration::from_millis(millis));
            return;
        }
        None => return,
    };
    fleet
        .metrics
        .fleet
        .invalidations_received
        .get_or_create(&KindLabels { kind })
        .inc();
}
