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
//!
//! `--headers` adds the header work no KooDrive gateway can leave out, done with the gateway's
//! own code: hop-by-hop headers stripped both ways, the client's `X-Traceid` taken or one made
//! and sent up and back, and the gateway's authenticator (`Auth::apply`) in token mode (`Host`,
//! `X-User-Id`, `language`, `X-Date`, `Authorization`). It is what nginx's
//! `NGINX_GATEWAY_HEADERS` front (`bench/common.sh`) does, so the two compare like for like.

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
use koodrive_gateway::auth::Auth;
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
    /// Do the header work every KooDrive gateway must do (see the module's comment).
    #[arg(long)]
    headers: bool,
}

type Idle = Arc<Mutex<Vec<SendRequest<Incoming>>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let idle: Idle = Arc::default();
    let lifetime = Duration::from_secs(cli.lifetime_secs);
    // Made once and kept for the process's life, as the gateway keeps its own.
    let auth: Option<&'static Auth> = match cli.headers {
        true => Some(Box::leak(Box::new(required::auth()?))),
        false => None,
    };
    accept::run(cli.listen, lifetime, |stream| {
        let (idle, upstream) = (idle.clone(), cli.upstream);
        let service = service_fn(move |request| forward(request, idle.clone(), upstream, auth));
        let stream = TokioIo::new(Coalesced::new(stream));
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(stream, service));
    })
}

async fn forward(
    request: Request<Incoming>,
    idle: Idle,
    upstream: SocketAddr,
    auth: Option<&'static Auth>,
) -> Result<Response<Returning>, BoxError> {
    let (mut head, body) = request.into_parts();
    let trace = auth
        .map(|auth| required::upstream(auth, &mut head))
        .transpose()?;
    let request = Request::from_parts(head, body);
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
    let mut response = sender.send_request(request).await?;
    if let Some(trace) = trace {
        required::downstream(response.headers_mut(), trace);
    }
    Ok(response.map(|body| Returning::new(body, sender, idle)))
}

/// The header work every KooDrive gateway must do, with the gateway's own code: its trace-id
/// rule, hop-by-hop stripping and authenticator.
mod required {
    use std::time::Duration;

    use http::request::Parts;
    use http::{HeaderMap, HeaderValue};
    use koodrive_gateway::auth::Auth;
    use koodrive_gateway::config::{AuthConfig, AuthMode, SecretSource};
    use koodrive_gateway::error::GatewayError;
    use koodrive_gateway::headers::{self, X_TRACEID};
    use koodrive_gateway::metrics::Metrics;
    use koodrive_gateway::secret::Secret;
    use koodrive_gateway::trace_id;
    use time::OffsetDateTime;

    const HOST: HeaderValue = HeaderValue::from_static("koodrive.example");

    /// The gateway's authenticator in token mode, set as the bench's nginx front sets the same
    /// headers (`NGINX_GATEWAY_HEADERS` in `bench/common.sh`).
    pub fn auth() -> anyhow::Result<Auth> {
        let config = AuthConfig {
            mode: AuthMode::Token,
            user_id: HeaderValue::from_static("1505084218764547200"),
            app_id: String::new(),
            secret: SecretSource::Inline(Secret::new("bench-token")?),
            file_poll_interval: Duration::from_secs(1),
            language: HeaderValue::from_static("en_US"),
            override_client: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        runtime
            .block_on(Auth::new(&config, &Metrics::new()))
            .map_err(anyhow::Error::msg)
    }

    /// The request's trace id (the client's, or a new one), after its head is made ready to go
    /// upstream.
    pub fn upstream(auth: &Auth, head: &mut Parts) -> Result<HeaderValue, GatewayError> {
        let trace = trace_id::from_headers(&head.headers).unwrap_or_else(|_| trace_id::generate());
        headers::strip_hop_by_hop(&mut head.headers);
        head.headers.insert(X_TRACEID, trace.clone());
        let now = OffsetDateTime::now_utc();
        auth.apply(&head.method, &head.uri, &mut head.headers, &HOST, None, now)?;
        Ok(trace)
    }

    /// The answer's headers made ready to go back, with the request's trace id.
    pub fn downstream(answer: &mut HeaderMap, trace: HeaderValue) {
        headers::strip_hop_by_hop(answer);
        answer.insert(X_TRACEID, trace);
    }
}

/// An answer's body that gives its connection back to the pool when it ends: the idea of the
/// gateway's `upstream::pool`, without its bookkeeping (idle timeouts, the "anything heard"
/// flag), which the floor is there to leave out.
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
