//! https:// upstreams: rustls with certificate verification on, and an extra CA file for
//! private deployments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use crate::support::{config, TestGateway, TASK_LIST};

/// A private CA, and a TLS KooDrive for `localhost` whose certificate it signed.
async fn tls_upstream() -> (String, String, tokio::task::JoinHandle<()>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let host = request
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_owned());
                        let body =
                            serde_json::json!({ "code": 0, "msg": "Success.", "host": host })
                                .to_string();
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}"), ca.pem(), task)
}

#[tokio::test]
async fn https_upstreams_are_verified_and_an_extra_ca_can_be_trusted() {
    let (url, ca_pem, server) = tls_upstream().await;

    // The private CA is not a public root: verification fails, and the gateway says so.
    let untrusted = TestGateway::start(config(&url, "")).await;
    let response = untrusted.client.get(TASK_LIST).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["code"], "GATEWAY_UPSTREAM_UNREACHABLE");

    let ca_file = std::env::temp_dir().join(format!("kdgw-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).unwrap();
    let trusted = TestGateway::start(config(
        &url,
        &format!("[upstream]\nca_file = \"{}\"", ca_file.display()),
    ))
    .await;
    let response = trusted.client.get(TASK_LIST).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["host"], url.trim_start_matches("https://"));
    std::fs::remove_file(ca_file).ok();
    server.abort();
}

/// README, config reference: "`upstream.connect_timeout` | `2s` | TCP + TLS connect".
///
/// hyper-util's `HttpConnector::set_connect_timeout` bounds the TCP connect only; the rustls
/// handshake that `HttpsConnector` runs after it is bounded by nothing but `upstream.timeout`.
/// An https upstream that accepts the connection and never answers the ClientHello holds every
/// request for the whole `upstream.timeout` (5 s here), not `connect_timeout` (300 ms).
#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_bounded_by_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, keeps every socket open, never writes a byte: the TLS handshake never completes.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let url = format!("https://{addr}");
    let overlay = "[upstream]\nconnect_timeout = \"300ms\"\ntimeout = \"5s\"";
    let gw = TestGateway::start(crate::support::config(&url, overlay)).await;
    let started = Instant::now();
    let response = gw
        .client
        .get("/koodrive/ose/v1/task/1486254586942472064")
        .await;
    let took = started.elapsed();
    holder.abort();
    assert!(
        took < Duration::from_secs(2),
        "upstream.connect_timeout is 300ms (\"TCP + TLS connect\"), yet a TLS handshake that \
         never completes held the request {took:?} (upstream.timeout is 5s): status {}, {}",
        response.status,
        response.text()
    );
}
