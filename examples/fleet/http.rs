//! The bench's gateways and client: gateway configs with or without `[fleet]`, one request timed
//! under a bound, metrics read from the admin listener, and percentiles.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use koodrive_gateway::config::Config;
use koodrive_gateway::gateway::{self, Running};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// No request waits longer than this: the bench never hangs.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(10);

pub const LIST: &str = "/koodrive/ose/v1/task/list";
/// Another page of the same list (its own cache key).
pub const OTHER_PAGE: &str = "/koodrive/ose/v1/task/list?pageSize=1";
pub const CREATE: &str = "/koodrive/ose/v1/task/create";

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Where a gateway's shared Redis is, when it has one.
pub struct Fleet<'a> {
    pub url: String,
    pub key_file: &'a Path,
    pub password_file: &'a Path,
}

pub async fn start(upstream: &str, fleet: Option<&Fleet<'_>>, cache: &str) -> Running {
    let fleet = fleet.map_or(String::new(), |fleet| {
        format!(
            "[fleet]\nredis_url = \"{}\"\nkey_file = \"{}\"\nredis_password_file = \"{}\"\n",
            fleet.url,
            fleet.key_file.display(),
            fleet.password_file.display()
        )
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_in_flight = 100000\n\
         [upstream]\nurl = \"{upstream}\"\ntimeout = \"2s\"\n\
         [cache]\n{cache}\n\
         [auth]\nmode = \"token\"\nuser_id = \"7\"\naccess_token = \"bench\"\n\
         [log]\nformat = \"json\"\nlevel = \"error\"\n{fleet}"
    );
    let config = Config::parse(&text, []).unwrap_or_else(|e| panic!("bench config: {e}"));
    gateway::run(config)
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"))
}

/// One answer: status, latency, Cache-Status and body; `None` when none came in time.
pub struct Answer {
    pub status: u16,
    pub took: Duration,
    pub cache: String,
    pub body: Bytes,
}

impl Answer {
    /// The mock page's version (see `main.rs`).
    pub fn version(&self) -> Option<u64> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("version")?
            .as_u64()
    }
}

pub async fn send(
    client: &HttpClient,
    post: bool,
    addr: SocketAddr,
    path: &str,
    user: &str,
) -> Option<Answer> {
    let started = Instant::now();
    let (method, body) = match post {
        true => ("POST", r#"{"taskName":"t","taskType":0}"#),
        false => ("GET", ""),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("x-user-id", user)
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, cache, body))
    };
    let (status, cache, body) = tokio::time::timeout(REQUEST_LIMIT, exchange).await.ok()??;
    Some(Answer {
        status,
        took: started.elapsed(),
        cache,
        body,
    })
}

/// A series' value from the admin listener's metrics, when it is there.
pub async fn metric(client: &HttpClient, admin: SocketAddr, series: &str) -> Option<f64> {
    let answer = send(client, false, admin, "/metrics", "-").await?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (at most `limit`) until every gateway's fleet mode is `up`; how long it took.
pub async fn wait_up(client: &HttpClient, fleet: &[&Running], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let mut all = true;
        for running in fleet {
            let up = metric(client, running.admin_addr, "koodrive_gateway_fleet_up").await;
            all &= up == Some(1.0);
        }
        if all {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The `q`-th quantile (0..=1) of `values`.
pub fn quantile(values: &mut [Duration], q: f64) -> Duration {
    values.sort();
    if values.is_empty() {
        return Duration::ZERO;
    }
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at]
}

pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}
