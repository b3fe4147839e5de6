//! The rustls client set-up shared by every outbound connection (KooDrive, the OTLP collector):
//! the Mozilla roots, plus the certificates of `upstream.ca_file` when one is given.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

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

/// A client config trusting the public roots and, when given, every certificate in `ca_file`.
pub fn tls_config(
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
