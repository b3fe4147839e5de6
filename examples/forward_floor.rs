//! The forwarding floor for `bench/compare.sh` and `bench/cpu.sh`: a bare hyper HTTP/1 proxy
//! on tokio's single-threaded runtime that passes every request to one upstream over hyper's own
//! keep-alive client connections (`hyper::client::conn::http1`, kept last in, first out, given
//! back when the answer's body ends) and passes the answer back untouched. No routing, no
//! validation, no app authentication, trace id, metrics, logging, retry, deadline or header
//! rewriting. What a forwarded request can cost at best with hyper and tokio on the machine the
//! bench runs on; the gateway's forwarded figures, and nginx `proxy_pass`'s, are read against it.
//!
//! ```text
//! forward_floor --listen 127.0.0.1:PORT --upstream 127.0.0.1:UPSTREAM_PORT
//! ```
//!
//! Client connections are written the gateway's way (`koodrive_gateway::coalesce`). The server
//! exits by itself after `--lifetime-secs`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use koodrive_gateway::coalesce::Coalesced;
use tokio::net::TcpStream;

#[path = "floors/accept.rs"]
mod accept;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long, default_value_t = 900)]
    lifetime_secs: u64,
}

type Idle = Arc<Mutex<Vec<SendRequest<Incoming>>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let idle: Idle = Arc::default();
    let lifetime = Duration::from_secs(cli.lifetime_secs);
    accept::run(cli.listen, lifetime, |stream| {
        let (idle, upstream) = (idle.clone(), cli.upstream);
        let service = service_fn(move |request| forward(request, idle.clone(), upstream));
        let stream = TokioIo::new(Coalesced::new(stream));
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(stream, service));
    })
}

async fn forward(
    request: Request<Incoming>,
    idle: Idle,
    upstream: SocketAddr,
) -> Result<Response<Returning>, BoxError> {
    // A connection the upstream closed while it sat idle (nginx's keepalive_timeout between
    // rounds) has ended its task: passed over. Any other is ready, or about to be.
    let mut pooled = None;
    loop {
        let popped = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some(mut sender) = popped else { break };
        if sender.ready().await.is_ok() {
            pooled = Some(sender);
            break;
        }
    }
    let mut sender = match pooled {
        Some(sender) => sender,
        None => {
            let stream = TcpStream::connect(upstream).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender
        }
    };
    let response = sender.send_request(request).await?;
    Ok(response.map(|body| Returning::new(body, sender, idle)))
}

/// An answer's body that gives its connection back to the pool when it ends.
struct Returning {
    body: Incoming,
    back: Option<(SendRequest<Incoming>, Idle)>,
}

impl Returning {
    fn new(body: Incoming, sender: SendRequest<Incoming>, idle: Idle) -> Returning {
        let mut returning = Returning {
            body,
            back: Some((sender, idle)),
        };
        if returning.body.is_end_stream() {
            returning.give_back();
        }
        returning
    }

    fn give_back(&mut self) {
        if let Some((sender, idle)) = self.back.take() {
            idle.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sender);
        }
    }
}

impl Body for Returning {
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
            Poll::Ready(Some(Err(_))) => self.back = None,
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
