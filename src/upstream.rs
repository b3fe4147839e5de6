//! The pooled upstream client: HTTP/1.1 keep-alive connections to KooDrive over rustls (with
//! certificate verification) or plain http, bounded by the connect timeout and by one deadline
//! that covers the whole exchange, body included.

mod deadline;

use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::time::Instant;

use crate::body::{self, Body, BoxError};
use crate::config::UpstreamConfig;
use crate::error::GatewayError;

pub use deadline::Deadline;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("CA file {0} holds no usable certificate")]
    NoCertificate(std::path::PathBuf),
    #[error("TLS setup failed")]
    Rustls(#[from] rustls::Error),
}

#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: http::uri::Authority,
    timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, TlsSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Upstream {
            client,
            scheme: config.scheme.clone(),
            authority: config.authority.clone(),
            timeout: config.timeout,
        })
    }

    /// The upstream URI for a client request's path and query.
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, GatewayError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query.map_or("/", PathAndQuery::as_str))
            .build()
            .map_err(|_| GatewayError::BadRequest("request target cannot be forwarded"))
    }

    /// When an exchange that starts now must be over.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Sends a request; the response body errors out if it is still streaming at `deadline`.
    pub async fn send(
        &self,
        request: Request<Body>,
        deadline: Instant,
    ) -> Result<Response<Body>, GatewayError> {
        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(self.timeout))?
            .map_err(classify)?;
        Ok(response.map(|incoming| body::boxed(Deadline::new(incoming, deadline))))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Connect failures (refused, DNS, TLS) are 502; a connect timeout is 504; anything after the
/// connection was made (reset, garbage instead of HTTP) is a protocol failure, 502.
fn classify(error: hyper_util::client::legacy::Error) -> GatewayError {
    let timed_out = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut found = false;
        while let Some(e) = source {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                || e.to_string().contains("timed out")
            {
                found = true;
                break;
            }
            source = e.source();
        }
        found
    };
    if error.is_connect() && timed_out {
        return GatewayError::UpstreamTimeout(Duration::ZERO);
    }
    let boxed: BoxError = Box::new(error);
    match boxed.downcast_ref::<hyper_util::client::legacy::Error>() {
        Some(e) if e.is_connect() => GatewayError::UpstreamConnect(boxed),
        _ => GatewayError::UpstreamProtocol(boxed),
    }
}

pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|source| TlsSetupError::CaFile {
            path: path.to_owned(),
            source,
        })? {
            let cert = cert.map_err(|source| TlsSetupError::CaFile {
                path: path.to_owned(),
                source,
            })?;
            roots.add(cert)?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsSetupError::NoCertificate(path.to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
