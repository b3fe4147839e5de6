//! The admin listener: liveness, readiness, and cache purges. It binds to loopback by default;
//! when `admin.token` is set, writes need `Authorization: Bearer <admin token>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::cache::{query, TaskListCache};
use crate::error::GatewayError;
use crate::metrics::{Metrics, ReasonLabels};
use crate::secret::Secret;

/// The admin listener's endpoints, as `(method, path)`: what [`handle`] answers (a GET endpoint
/// answers HEAD too), and what the README's reference must name.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", HEALTHZ),
    ("GET", READYZ),
    ("GET", METRICS),
    ("POST", PURGE),
];

const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";
const METRICS: &str = "/metrics";
const PURGE: &str = "/cache/purge";

pub struct Admin {
    /// False once shutdown has begun: readiness turns 503 while requests drain.
    pub ready: Arc<AtomicBool>,
    pub cache: Arc<TaskListCache>,
    pub token: Option<Secret>,
    pub metrics: Arc<Metrics>,
}

pub async fn handle<B>(admin: &Admin, request: Request<B>) -> Response<Body> {
    let ready = admin.ready.load(Ordering::SeqCst);
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let write = request.method() == Method::POST;
    match (request.uri().path(), read, write) {
        (HEALTHZ, true, _) => json(StatusCode::OK, r#"{"status":"alive"}"#.into()),
        (READYZ, true, _) if ready => json(StatusCode::OK, r#"{"status":"ready"}"#.into()),
        (READYZ, true, _) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"draining"}"#.into(),
        ),
        (METRICS, true, _) => metrics(admin),
        (PURGE, _, true) => purge(admin, &request).await,
        // A known endpoint asked with the wrong method: 405 naming the right ones (RFC 9110
        // section 15.5.6), so a `GET /cache/purge` is not mistaken for a missing endpoint.
        (HEALTHZ | READYZ | METRICS, _, _) => not_allowed("GET, HEAD"),
        (PURGE, _, _) => not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            "GATEWAY_ADMIN_NOT_FOUND",
            "no such admin endpoint",
        ),
    }
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "GATEWAY_ADMIN_METHOD_NOT_ALLOWED",
        &format!("this admin endpoint takes {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn purge<B>(admin: &Admin, request: &Request<B>) -> Response<Body> {
    // One credential, as on the proxy listener: a second one is not silently ignored.
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "GATEWAY_BAD_REQUEST",
            "Authorization must be sent at most once",
        );
    }
    if !authorized(admin, request) {
        let mut refused = error(
            StatusCode::UNAUTHORIZED,
            "GATEWAY_ADMIN_UNAUTHORIZED",
            "admin writes need Authorization: Bearer <admin token>",
        );
        // RFC 9110 section 15.5.2: a 401 names the scheme it wants.
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"koodrive-gateway admin\""),
        );
        return refused;
    }
    let user_id = match purge_query(request.uri().query()) {
        Ok(user_id) => user_id,
        Err((code, msg)) => return error(StatusCode::BAD_REQUEST, code, &msg),
    };
    match user_id {
        None => {
            admin.cache.purge_all().await;
            invalidated(admin, "purge_all");
            tracing::info!("admin purge: every cached page dropped");
            json(StatusCode::OK, r#"{"purged":"all"}"#.into())
        }
        // Read as the cache key reads a user id: without the spaces around it.
        Some(user_id) => match HeaderValue::from_str(&user_id).map(|v| crate::auth::trimmed(&v)) {
            Ok(value) if !value.is_empty() => {
                admin.cache.invalidate_user(&value).await;
                invalidated(admin, "purge_user");
                tracing::info!("admin purge: one user's cached pages dropped");
                json(
                    StatusCode::OK,
                    serde_json::json!({ "purged": "user" }).to_string(),
                )
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "GATEWAY_BAD_REQUEST",
                "user_id must be a header-safe, non-empty value",
            ),
        },
    }
}

/// The purge's `user_id`, if any, decoded as strictly as the proxy listener decodes a task-list
/// query: malformed percent-encoding, or bytes that are not UTF-8, are a 400 naming the
/// parameter. Only `user_id` is understood: a misspelt one must not read as "purge everything".
/// A refusal is its code and message.
fn purge_query(query: Option<&str>) -> Result<Option<String>, (&'static str, String)> {
    let mut user_id = None;
    let mut rest = query.unwrap_or_default();
    while !rest.is_empty() {
        let pair;
        (pair, rest) = query::split_at_byte(rest, b'&').unwrap_or((rest, ""));
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = query::split_at_byte(pair, b'=').unwrap_or((pair, ""));
        let bad_query = |e: GatewayError| (e.code(), e.to_string());
        let name = query::decode(raw_name, raw_name).map_err(bad_query)?;
        let value = query::decode(raw_value, &name).map_err(bad_query)?;
        if name != "user_id" || user_id.is_some() {
            return Err((
                "GATEWAY_BAD_REQUEST",
                "purge takes no parameter (everything) or one user_id".to_owned(),
            ));
        }
        user_id = Some(value.into_owned());
    }
    Ok(user_id)
}

fn invalidated(admin: &Admin, reason: &'static str) {
    admin
        .metrics
        .cache_invalidations
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

fn metrics(admin: &Admin) -> Response<Body> {
    let m = &admin.metrics;
    let usage = admin.cache.usage();
    m.cache_entries
        .set(i64::try_from(usage.entries).unwrap_or(i64::MAX));
    m.cache_bytes
        .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
    let mut response = Response::new(body::full(m.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn authorized<B>(admin: &Admin, request: &Request<B>) -> bool {
    let Some(token) = &admin.token else {
        return true;
    };
    // The scheme's name is case-insensitive (RFC 9110 section 11.1); the token is not.
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start_matches(' '));
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, code: &str, msg: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "code": code, "msg": msg }).to_string(),
    )
}

fn json(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin() -> Admin {
        let cache = crate::config::Config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[auth]\nuser_id = \"1\"\napp_id = \"a\"\napp_secret = \"s\"",
            [],
        )
        .unwrap()
        .cache;
        Admin {
            ready: Arc::new(AtomicBool::new(true)),
            cache: Arc::new(TaskListCache::new(&cache)),
            token: None,
            metrics: Metrics::new(),
        }
    }

    /// ROUTES is what the handler serves: each answers its method, and nothing else is served.
    #[tokio::test]
    async fn routes_lists_exactly_the_endpoints_served() {
        let admin = admin();
        for (method, path) in ROUTES {
            let request = Request::builder()
                .method(*method)
                .uri(*path)
                .body(())
                .unwrap();
            let status = handle(&admin, request).await.status();
            assert!(status.is_success(), "{method} {path}: {status}");
        }
        for path in ["/", "/health", "/cache", "/metrics/x"] {
            let request = Request::builder().uri(path).body(()).unwrap();
            assert_eq!(
                handle(&admin, request).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
