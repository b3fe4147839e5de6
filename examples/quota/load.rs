//! What both budget benches (`examples/quota.rs`, `examples/quota_fleet.rs`) share: the client,
//! one request under a bound, a mock KooDrive that notes when each call arrives, clients sending
//! distinct misses until a deadline, and the report of KooDrive's calls a second.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use koodrive_mock::{Mock, Reply};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// No request waits longer than this: the bench never hangs.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// When each call reached the mock KooDrive.
pub type Arrivals = Arc<Mutex<Vec<Instant>>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A GET's status and how long it took; `None` when it failed or took over the bound.
pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let uri = format!("http://{addr}{path}").parse().ok()?;
    let exchange = async {
        let response = client.get(uri).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    };
    let status = tokio::time::timeout(REQUEST_LIMIT, exchange).await.ok()??;
    Some((status, started.elapsed()))
}

/// A mock KooDrive answering every call with `body` (a 200), and the arrival of each call.
pub async fn recording_koodrive(body: &'static str) -> (Mock, Arrivals) {
    let arrivals = Arrivals::default();
    let seen = Arc::clone(&arrivals);
    let mock = Mock::start(move |_| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(Instant::now());
        }
        Reply::json(200, body)
    })
    .await;
    (mock, arrivals)
}

/// One client per `(gateway, first id)` sending misses for distinct tasks, from its first id on,
/// until `until`; how many were answered 200 and how many 429.
pub async fn misses(
    client: &HttpClient,
    clients: impl IntoIterator<Item = (SocketAddr, u64)>,
    until: Instant,
) -> Result<(u64, u64), String> {
    let workers: Vec<_> = clients
        .into_iter()
        .map(|(addr, base)| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut ok, mut limited, mut n) = (0u64, 0u64, 0u64);
                while Instant::now() < until {
                    n += 1;
                    let path = format!("/koodrive/ose/v1/task/{}", base + n);
                    match get(&client, addr, &path).await {
                        Some((200, _)) => ok += 1,
                        Some((429, _)) => limited += 1,
                        _ => {}
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for worker in workers {
        let (o, l) = worker.await.map_err(|e| e.to_string())?;
        ok += o;
        limited += l;
    }
    Ok((ok, limited))
}

/// Prints KooDrive's calls in each of the `seconds` from `started` (each line ending with
/// `per_second`), and the busiest one-second window of any start; returns that window's calls.
pub fn report(
    arrivals: &Arrivals,
    started: Instant,
    seconds: u64,
    per_second: &str,
) -> Result<usize, String> {
    let calls = arrivals.lock().map_err(|e| e.to_string())?.clone();
    for second in 0..seconds {
        let from = started + Duration::from_secs(second);
        let to = from + Duration::from_secs(1);
        let n = calls.iter().filter(|t| **t >= from && **t < to).count();
        println!("  second {second}: {n} KooDrive calls{per_second}");
    }
    let busiest = (0..calls.len())
        .map(|i| {
            let end = calls[i] + Duration::from_secs(1);
            calls[i..].iter().take_while(|t| **t < end).count()
        })
        .max()
        .unwrap_or(0);
    Ok(busiest)
}
