//! A scripted KooDrive that records every request, counts hits and connections, and answers
//! with whatever the test's handler says: a status, headers and body, after an optional delay or
//! once the test releases it, streamed in two halves with an optional gate between them, or by
//! dropping the connection.
//!
//! ```
//! use koodrive_mock::{Mock, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mock = Mock::start(|seen| match seen.uri.path() {
//!     "/broken" => Reply::json(503, r#"{"code":1,"msg":"down"}"#),
//!     _ => Reply::ok(),
//! })
//! .await;
//! assert!(mock.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(mock.hits(), 0);
//! # }
//! ```
// Test fixtures: a set-up the test got wrong (a bad header in a scripted reply, a port that
// cannot be bound) fails the test loudly rather than being answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

use crate::koodrive::{KooDrive, MockAuth};
use crate::server::Server;

mod reply;
pub use reply::Reply;

/// How long [`Mock::wait_for_hits`] waits before it panics: generous for a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A request as the mock received it, its body read whole.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// A header's value; panics when it is not visible ASCII, which no test sends by accident.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct State {
    handler: Box<Handler>,
    /// What [`Reply::koodrive()`] answers with; none from [`Mock::start`].
    koodrive: Option<KooDrive>,
    requests: Mutex<Vec<Recorded>>,
    hits: AtomicUsize,
    arrived: Notify,
}

/// A running scripted mock on `127.0.0.1:0`; dropping it closes its listener and connections.
pub struct Mock {
    server: Server,
    state: Arc<State>,
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}
impl std::error::Error for Dropped {}

impl Mock {
    /// Answers every request with `Reply::ok()`.
    pub async fn ok() -> Mock {
        Mock::start(|_| Reply::ok()).await
    }

    /// Answers every request with `Reply::ok()`, those to a path ending in `/slow` after `delay`.
    pub async fn with_slow_path(delay: Duration) -> Mock {
        Mock::start(move |seen| match seen.uri.path().ends_with("/slow") {
            true => Reply::ok().delay(delay),
            false => Reply::ok(),
        })
        .await
    }

    /// Answers every request with what `handler` makes of it.
    ///
    /// # Panics
    /// When no loopback port can be bound: this is for tests.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        match Mock::try_start(handler).await {
            Ok(mock) => mock,
            Err(error) => panic!("the mock KooDrive cannot listen on 127.0.0.1: {error}"),
        }
    }

    /// KooDrive itself ([`MockKooDrive`](crate::MockKooDrive)'s behaviour, accepting `auth`)
    /// under a script: every request is recorded and answered with what `script` makes of it,
    /// where [`Reply::koodrive()`] is KooDrive's own answer, on time or with a fault.
    ///
    /// # Panics
    /// When no loopback port can be bound: this is for tests.
    pub async fn koodrive(
        auth: MockAuth,
        script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Mock {
        match Mock::listen(Some(KooDrive::new(auth)), Box::new(script)).await {
            Ok(mock) => mock,
            Err(error) => panic!("the mock KooDrive cannot listen on 127.0.0.1: {error}"),
        }
    }

    /// [`Mock::start`], with a failure to bind returned.
    pub async fn try_start(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Mock> {
        Mock::listen(None, Box::new(handler)).await
    }

    async fn listen(koodrive: Option<KooDrive>, handler: Box<Handler>) -> std::io::Result<Mock> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let state = Arc::new(State {
            koodrive,
            handler,
            requests: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            arrived: Notify::new(),
        });
        let shared = Arc::clone(&state);
        let server = Server::spawn(listener, move |req| answer(Arc::clone(&shared), req))?;
        Ok(Mock { server, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// How many TCP connections the mock accepted.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Every request seen so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// The latest request.
    ///
    /// # Panics
    /// When there was none.
    pub fn last(&self) -> Recorded {
        match self.requests().pop() {
            Some(last) => last,
            None => panic!("the mock saw no request"),
        }
    }

    /// Waits until the mock has received at least `n` requests (headers and body read).
    ///
    /// # Panics
    /// When that takes longer than [`PATIENCE`].
    pub async fn wait_for_hits(&self, n: usize) {
        let arrived = async {
            loop {
                let notified = self.state.arrived.notified();
                if self.hits() >= n {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(PATIENCE, arrived).await.is_err() {
            panic!("timed out waiting for upstream requests");
        }
    }
}

/// The recorded requests, even after a handler panicked while holding the lock.
fn lock(requests: &Mutex<Vec<Recorded>>) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
    requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn answer(
    state: Arc<State>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<Response<ChannelBody>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let mut reply = (state.handler)(&recorded);
    if reply.koodrive {
        answer_as_koodrive(&mut reply, state.koodrive.as_ref(), &recorded).await;
    }
    lock(&state.requests).push(recorded);
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(hold) = &reply.hold {
        hold.notified().await;
    }
    if reply.drop_connection {
        return Err(Dropped);
    }
    let (tx, rx) = mpsc::channel(2);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    let has_length = reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let body = reply.body.clone();
    let size =
        (!has_length && reply.gate.is_none() && !reply.chunked).then_some(reply.body.len() as u64);
    tokio::spawn(async move {
        let half = body.len() / 2;
        let _ = tx.send(body.slice(..half)).await;
        if let Some(gate) = reply.gate {
            gate.notified().await;
        }
        let _ = tx.send(body.slice(half..)).await;
    });
    Ok(response.body(ChannelBody { rx, size }).unwrap())
}

/// Puts KooDrive's answer to `seen` in `reply`; a mock without KooDrive answers 501 saying so.
async fn answer_as_koodrive(reply: &mut Reply, koodrive: Option<&KooDrive>, seen: &Recorded) {
    let Some(koodrive) = koodrive else {
        reply.status = 501;
        reply.headers = vec![("content-type".into(), "application/json".into())];
        reply.body =
            r#"{"code":501,"msg":"Reply::koodrive() needs a mock started with Mock::koodrive"}"#
                .into();
        return;
    };
    let mut request = http::Request::new(());
    *request.method_mut() = seen.method.clone();
    *request.uri_mut() = seen.uri.clone();
    *request.version_mut() = seen.version;
    *request.headers_mut() = seen.headers.clone();
    let (parts, ()) = request.into_parts();
    let (head, body) = koodrive.answer(&parts, &seen.body).into_parts();
    reply.status = head.status.as_u16();
    reply.headers = head
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    reply.body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
}

/// A response body fed from a channel, so a test can hold part of it back.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    size: Option<u64>,
}

impl ChannelBody {
    /// A body of unknown length (sent chunked) fed by `rx`.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> ChannelBody {
        ChannelBody { rx, size: None }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.size {
            Some(size) => http_body::SizeHint::with_exact(size),
            None => http_body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
