//! HTTPS for every client of obol: the CLI, the wallet and the tests build their HTTP client here,
//! so each one trusts the same roots (the system's, plus a CA the caller names) and speaks TLS
//! through rustls with the *ring* provider, the one the server uses. No process-wide default is
//! needed or installed.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::ClientError;

/// An HTTP client that trusts the system's root certificates and, if given, the CA certificates
/// in `extra_roots_pem` (PEM, one or more). Plain `http://` URLs work as before.
///
/// A machine without system roots still gets a client: `https://` requests then fail as signed
/// by an unknown issuer until a CA is named, and `http://` ones work.
pub fn http_client(extra_roots_pem: Option<&[u8]>) -> Result<reqwest::Client, ClientError> {
    Ok(http_client_builder(extra_roots_pem)?.build()?)
}

/// [`http_client`]'s builder, for callers that set more (pool sizes, timeouts) before building.
pub fn http_client_builder(extra_roots_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match extra_roots_pem {
        None => Vec::new(),
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ClientError::Tls(format!("the CA file is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Tls("the CA file holds no PEM certificate".into()));
            }
            certs
        }
    };
    let had_extra = !extra.is_empty();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider) {
        Ok(verifier) => builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth(),
        // A bad extra root is the caller's to fix.
        Err(error) if had_extra => return Err(ClientError::Tls(format!("the CA certificate: {error}"))),
        // No roots at all on this machine: every server is then of an unknown issuer.
        Err(_) => builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}
