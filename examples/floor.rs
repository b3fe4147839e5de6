//! The floor for `bench/compare.sh`: a bare hyper HTTP/1 server on tokio's single-threaded
//! runtime that answers every request with one stored response (the gateway's own cache hit,
//! captured with curl: the same headers and body), with no routing, validation, cache lookup,
//! trace id, metrics or logging. Its connections are written the gateway's way (the answers of
//! one turn of the runtime go out together, `koodrive_gateway::coalesce`). What a cache hit can
//! cost at best with hyper and tokio on the machine the bench runs on; the gateway's figures are
//! read against it.
//!
//! ```text
//! floor --listen 127.0.0.1:PORT --headers-file hit.headers --body-file hit.body
//! ```
//!
//! `--headers-file` is curl's `-D` output; the status line, `date`, `content-length` and
//! connection-level headers are left to hyper. The server exits by itself after `--lifetime-secs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use koodrive_gateway::coalesce::Coalesced;

#[path = "floors/accept.rs"]
mod accept;

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    headers_file: PathBuf,
    #[arg(long)]
    body_file: PathBuf,
    #[arg(long, default_value_t = 900)]
    lifetime_secs: u64,
}

/// Headers hyper writes itself, or that belong to one connection.
const LEFT_TO_HYPER: [&str; 5] = [
    "date",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut headers = HeaderMap::new();
    for line in std::fs::read_to_string(&cli.headers_file)?.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())?;
        if !LEFT_TO_HYPER.contains(&name.as_str()) {
            headers.append(name, HeaderValue::from_str(value.trim())?);
        }
    }
    let body = Bytes::from(std::fs::read(&cli.body_file)?);
    let lifetime = Duration::from_secs(cli.lifetime_secs);
    accept::run(cli.listen, lifetime, |stream| {
        let (headers, body) = (headers.clone(), body.clone());
        let service = service_fn(move |_request| {
            let mut response = Response::new(Full::new(body.clone()));
            *response.headers_mut() = headers.clone();
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(Coalesced::new(stream)), service)
                .await;
        });
    })
}
