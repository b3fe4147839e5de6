//! https:// upstreams: rustls with certificate verification on, and an extra CA file for
//! private deployments.

use std::sync::Arc;

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
