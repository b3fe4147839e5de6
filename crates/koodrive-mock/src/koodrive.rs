//! KooDrive itself, as far as the gateway needs it: what `koodrive-gateway --demo` runs and the
//! integration tests check the gateway against. It checks authentication like KooDrive, answers
//! in KooDrive's wire shape (not the documented schema), pages by cursor, and lets tasks move
//! NEW -> EXECUTING -> SUCCESS/FAILED.

pub mod auth_check;
pub mod list;
pub mod reply;
pub mod routes;
pub mod store;
pub mod tasks;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::server::Server;
use reply::{codes, ApiError, Lang};
use store::Store;

/// Largest request body the mock reads (KooDrive's task bodies are tiny).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The credentials the mock accepts: one app signature and any of `tokens` as a bearer token.
#[derive(Clone, Default)]
pub struct MockAuth {
    pub app_id: String,
    pub app_secret: String,
    /// Compared after stripping a leading `Bearer ` (or the docs' `Bearer+`).
    pub tokens: Vec<String>,
}

impl fmt::Debug for MockAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockAuth")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .finish()
    }
}

/// A running mock; dropping it stops the server without waiting.
#[derive(Debug)]
pub struct MockKooDrive {
    server: Server,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    koodrive: KooDrive,
    requests: AtomicU64,
}

impl MockKooDrive {
    /// Serves on `listener` (bind `127.0.0.1:0` in tests) from a spawned task, HTTP/1.1 and h2c.
    pub async fn start(listener: TcpListener, auth: MockAuth) -> std::io::Result<MockKooDrive> {
        let shared = Arc::new(Shared {
            koodrive: KooDrive::new(auth),
            requests: AtomicU64::new(0),
        });
        let serving = Arc::clone(&shared);
        let server = Server::spawn(listener, move |req| {
            let shared = Arc::clone(&serving);
            async move { Ok::<_, Infallible>(answer(&shared, req).await) }
        })?;
        tracing::info!(addr = %server.addr(), "mock KooDrive listening");
        Ok(MockKooDrive { server, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// How many requests it has answered, errors included.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many TCP connections it has accepted.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then closes every connection.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

/// KooDrive's behaviour over a request already read: its routes, its checks, its task store.
/// [`MockKooDrive`] serves one; a scripted [`crate::Mock`] can answer with one too.
#[derive(Debug)]
pub struct KooDrive {
    auth: MockAuth,
    store: Store,
}

impl KooDrive {
    /// Users' task histories are anchored at the present.
    pub fn new(auth: MockAuth) -> KooDrive {
        KooDrive {
            auth,
            store: Store::new(now_ms(OffsetDateTime::now_utc())),
        }
    }

    /// What KooDrive answers to `parts` with `body`: route, size, authentication, endpoint.
    pub fn answer(&self, parts: &Parts, body: &[u8]) -> Response<Full<Bytes>> {
        let lang = Lang::from_headers(&parts.headers);
        match self.respond(parts, body) {
            Ok(fields) => reply::success(fields, lang),
            Err(error) => error.response(),
        }
    }

    fn respond(
        &self,
        parts: &Parts,
        body: &[u8],
    ) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        let route = find_route(parts)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        let now = OffsetDateTime::now_utc();
        let user_id = auth_check::check(parts, body, &self.auth, now)?;
        routes::dispatch(
            &route,
            &self.store,
            &user_id,
            parts.uri.query(),
            body,
            now_ms(now),
        )
    }
}

/// One request: an unknown route is answered before its body is read, a body over
/// [`MAX_BODY_BYTES`] while it is read, anything else by [`KooDrive::answer`].
async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let response = match find_route(&parts) {
        Err(error) => error.response(),
        Ok(_) => match read_body(body).await {
            Ok(body) => shared.koodrive.answer(&parts, &body),
            Err(error) => error.response(),
        },
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    response
}

fn find_route(parts: &Parts) -> Result<routes::Route, ApiError> {
    routes::route(&parts.method, parts.uri.path()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("not found: {} {}", parts.method, clip(parts.uri.path())),
        )
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::TOO_LARGE,
        "request body exceeds 1 MiB",
    )
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(ApiError::bad_request(
            codes::BAD_BODY,
            format!("could not read request body: {error}"),
        )),
    }
}

fn now_ms(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn clip(value: &str) -> String {
    value.chars().take(100).collect()
}

#[cfg(test)]
mod tests;
