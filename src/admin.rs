//! The admin listener: liveness and readiness for orchestrators.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};

pub struct Admin {
    /// False once shutdown has begun: readiness turns 503 while requests drain.
    pub ready: Arc<AtomicBool>,
}

pub async fn handle<B>(admin: &Admin, request: Request<B>) -> Response<Body> {
    let ready = admin.ready.load(Ordering::SeqCst);
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => json(StatusCode::OK, r#"{"status":"alive"}"#),
        (&Method::GET | &Method::HEAD, "/readyz") if ready => {
            json(StatusCode::OK, r#"{"status":"ready"}"#)
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
        }
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"code":"GATEWAY_ADMIN_NOT_FOUND","msg":"no such admin endpoint"}"#,
        ),
    }
}

fn json(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
