//! The upstream connections: HTTP/1.1 keep-alive connections to KooDrive, one exchange at a time
//! each, kept idle last in, first out (the warmest first), and closed once idle for
//! `upstream.pool_idle_timeout`.
//!
//! It is hyper's own connection (`hyper::client::conn::http1`) under a small pool of the
//! gateway's, rather than hyper-util's general client: there is one origin, so nothing is
//! hashed or looked up per request; a connection goes back to the pool when its answer's body
//! ends, from the body itself, with no task spawned to wait for it; and the connection a request
//! went out on is at hand, with its [`Heard`] flag, to tell whether a failed request may be
//! sent again.
//!
//! A request that a pooled connection never wrote (KooDrive closed it while it sat idle) comes
//! back from hyper untouched and goes out on the next connection: that is never a retry.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tokio::time::Instant;

use super::heard::Heard;
use super::Connector;
use crate::body::{Body, BoxError};

/// How a request failed to get an answer's head.
pub enum SendError {
    /// No connection: the connect (TCP, TLS) failed or timed out.
    Connect(BoxError),
    /// The exchange failed on its connection; `heard` says whether KooDrive had sent any byte
    /// of an answer.
    Exchange { error: hyper::Error, heard: bool },
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<Vec<Idle>>,
    connector: Connector,
    /// What the connector dials.
    origin: (Scheme, Authority),
    idle_timeout: Duration,
    builder: http1::Builder,
    /// Whether the task that closes connections idle too long has started (on the first
    /// connect: it needs the runtime).
    reaping: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One connection: the sender of its requests and its [`Heard`] flag.
struct Conn {
    sender: SendRequest<Body>,
    heard: Heard,
}

impl Pool {
    pub fn new(
        connector: Connector,
        origin: (Scheme, Authority),
        idle_timeout: Duration,
        max_buf_size: usize,
    ) -> Pool {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(max_buf_size);
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::new()),
                connector,
                origin,
                idle_timeout,
                builder,
                reaping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) on an idle connection, or on a new one when
    /// none is idle or `fresh` asks for a new one. The answer's body hands its connection back
    /// when it ends.
    pub async fn send(
        &self,
        mut request: Request<Body>,
        fresh: bool,
    ) -> Result<Response<Returning>, SendError> {
        loop {
            // A connect is rare, and its future (the TCP and TLS connectors', the handshake's)
            // large: boxed, so that it does not weigh on every exchange's future.
            let (mut conn, reused) = match fresh {
                false => match self.checkout().await {
                    Some(conn) => (conn, true),
                    None => (Box::pin(self.connect()).await?, false),
                },
                true => (Box::pin(self.connect()).await?, false),
            };
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| Returning::new(body, conn, &self.inner)));
                }
                Err(mut failed) => match failed.take_message() {
                    // Never written: the idle connection was closing. The next one.
                    Some(unsent) if reused => request = unsent,
                    _ => {
                        return Err(SendError::Exchange {
                            error: failed.into_error(),
                            heard: conn.heard.anything(),
                        })
                    }
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and not idle for too long.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = self.inner.lock().pop()?;
            if idle.since.elapsed() >= self.inner.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            // Its last answer's body has ended, so hyper's connection task is about to ask for
            // the next request, if it has not already.
            if conn.sender.is_ready() || conn.sender.ready().await.is_ok() {
                tracing::trace!("upstream connection reused");
                return Some(conn);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        use tower_service::Service as _;
        self.start_reaping();
        let mut connector = self.inner.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let mut origin = Parts::default();
        origin.scheme = Some(self.inner.origin.0.clone());
        origin.authority = Some(self.inner.origin.1.clone());
        origin.path_and_query = Some(PathAndQuery::from_static("/"));
        let origin = Uri::from_parts(origin).map_err(|e| SendError::Connect(e.into()))?;
        let io = connector.call(origin).await.map_err(SendError::Connect)?;
        let heard = io.inner().heard();
        let exchange = |error| SendError::Exchange {
            error,
            heard: false,
        };
        let (mut sender, connection) = self.inner.builder.handshake(io).await.map_err(exchange)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %crate::error::ErrorChain(&error), "upstream connection ended");
            }
        });
        sender.ready().await.map_err(exchange)?;
        tracing::debug!("upstream connection opened");
        Ok(Conn { sender, heard })
    }

    /// Once: a task that closes the connections idle for `upstream.pool_idle_timeout`, every
    /// half of it, until the pool is gone.
    fn start_reaping(&self) {
        if self.inner.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(&self.inner);
        let every = (self.inner.idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(reap(pool, every));
    }
}

async fn reap(pool: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        // Dropped outside the lock: each closes its connection.
        let expired: Vec<Idle> = {
            let mut idle = pool.lock();
            let timeout = pool.idle_timeout;
            let (keep, expired) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.since.elapsed() < timeout && !i.conn.sender.is_closed());
            *idle = keep;
            expired
        };
        if !expired.is_empty() {
            tracing::debug!(
                connections = expired.len(),
                "idle upstream connections closed (upstream.pool_idle_timeout)"
            );
        }
        drop(expired);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while holding it cannot leave the list half-changed (push, pop, a swap).
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, conn: Conn) {
        if !conn.sender.is_closed() {
            let since = Instant::now();
            self.lock().push(Idle { conn, since });
            tracing::trace!("upstream connection back in the pool");
        }
    }
}

/// An answer's body that hands its connection back to the pool when it ends. A body dropped
/// before its end, or failed, takes its connection with it: hyper closes a connection whose
/// answer was not read to the end.
pub struct Returning {
    body: Incoming,
    conn: Option<(Conn, Weak<Inner>)>,
}

impl Returning {
    fn new(body: Incoming, conn: Conn, pool: &Arc<Inner>) -> Returning {
        let mut returning = Returning {
            body,
            conn: Some((conn, Arc::downgrade(pool))),
        };
        // No body (HEAD, 204, 304, a zero length): over already, and hyper never polls it.
        if returning.body.is_end_stream() {
            returning.give_back();
        }
        returning
    }

    fn give_back(&mut self) {
        if let Some((conn, pool)) = self.conn.take() {
            if let Some(pool) = pool.upgrade() {
                pool.put(conn);
            }
        }
    }
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => (),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
