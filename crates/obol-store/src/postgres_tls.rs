//! TLS to PostgreSQL, with libpq's meaning of `sslmode` and `sslrootcert` in `--database-url`.
//!
//! | `sslmode`          | encrypted                     | server certificate checked        |
//! |--------------------|-------------------------------|-----------------------------------|
//! | `disable`          | never                         | -                                 |
//! | `prefer` (default) | when the server offers TLS    | no                                |
//! | `require`          | always, or the connection fails | no                              |
//! | `verify-ca`        | always                        | chains to a CA in `sslrootcert`   |
//! | `verify-full`      | always                        | as verify-ca, and names the host  |
//!
//! `sslrootcert` is a PEM file of the CA certificates to trust (default `~/.postgresql/root.crt`,
//! as libpq). Without verification, TLS keeps the traffic private from a passive listener but not
//! from someone who can stand in the middle: production deployments use `verify-full`.
//!
//! The handshake is rustls (pure Rust, the same TLS stack `obol serve --tls-cert` uses). The
//! server certificate's hash is offered for SCRAM channel binding (`tls-server-end-point`,
//! RFC 5929), so with password authentication a man in the middle cannot relay the login.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::StoreError;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when offered, certificate not checked (libpq's default).
    Prefer,
    /// TLS always, certificate not checked.
    Require,
    /// TLS, the certificate chains to `sslrootcert`.
    VerifyCa,
    /// TLS, the certificate chains to `sslrootcert` and names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, StoreError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries plain text first; nothing that moves money should.
            other => {
                return Err(StoreError::Config(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// A parsed `--database-url`: the driver's own settings and how to do TLS.
pub struct Target {
    /// The driver's settings, `sslmode` mapped onto its disable/prefer/require.
    pub config: tokio_postgres::Config,
    /// The TLS connector, verifying as `mode` says.
    pub tls: MakeRustls,
    /// The `sslmode` asked for.
    pub mode: SslMode,
}

/// Keys this module reads itself (tokio-postgres does not know them, or not all their values).
const SSL_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];
/// libpq keys for client certificates, refused with a clear message rather than ignored.
const UNSUPPORTED_KEYS: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// Parses a libpq connection string (URL or `key=value` form) into a target.
pub fn parse(url: &str) -> Result<Target, StoreError> {
    let (rest, pairs) = split_ssl_keys(url)?;
    let mut mode = SslMode::Prefer;
    let mut root_cert: Option<PathBuf> = None;
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => mode = SslMode::parse(&value)?,
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            other => {
                return Err(StoreError::Config(format!(
                    "{other} in --database-url: client certificates are not supported; authenticate with a password \
                     (SCRAM, bound to the TLS channel) over sslmode=verify-full"
                )));
            }
        }
    }
    // The driver's parser never sees the password in an error of ours: its errors name the key.
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|error| StoreError::Config(format!("--database-url: {error}")))?;
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = load_roots(root_cert, mode)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|error| StoreError::Config(format!("sslrootcert: {error}")))?;
            Some(webpki)
        }
    };
    let verifier =
        Arc::new(CertificatePolicy { provider: provider.clone(), chain, check_name: mode == SslMode::VerifyFull });
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Config(format!("TLS: {error}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Target { config, tls: MakeRustls { config: Arc::new(client) }, mode })
}

fn load_roots(path: Option<PathBuf>, mode: SslMode) -> Result<RootCertStore, StoreError> {
    let name = if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" };
    let path = match path {
        Some(path) if path.as_os_str() == "system" => {
            return Err(StoreError::Config(
                "sslrootcert=system is not supported: give the path of a PEM file with the CA certificates to trust"
                    .into(),
            ));
        }
        Some(path) => path,
        None => {
            let default = std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"));
            match default {
                Some(path) if path.exists() => path,
                _ => {
                    return Err(StoreError::Config(format!(
                        "sslmode={name} needs the CA certificates to trust: add sslrootcert=/path/to/ca.pem to \
                         --database-url (or put them in ~/.postgresql/root.crt)"
                    )));
                }
            }
        }
    };
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(&path)
        .map_err(|error| StoreError::Config(format!("sslrootcert {shown}: {error}")))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|error| StoreError::Config(format!("sslrootcert {shown}: {error}")))?;
        roots
            .add(certificate)
            .map_err(|error| StoreError::Config(format!("sslrootcert {shown}: a certificate is unusable: {error}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Config(format!("sslrootcert {shown} holds no PEM certificate")));
    }
    Ok(roots)
}

/// Takes the `ssl*` keys out of a connection string, leaving the rest byte for byte.
#[expect(
    clippy::indexing_slicing,
    reason = "every read of bytes[at] is guarded by `at < bytes.len()` in the same condition or loop"
)]
fn split_ssl_keys(url: &str) -> Result<(String, Vec<(String, String)>), StoreError> {
    let is_ours = |key: &str| SSL_KEYS.contains(&key) || UNSUPPORTED_KEYS.contains(&key);
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), taken)) };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if is_ours(&key) {
                taken.push((key, percent_decode(value)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, taken));
    }
    // key=value form: values may be single-quoted with backslash escapes.
    let bytes = url.as_bytes();
    let mut rest = String::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at].is_ascii_whitespace() {
            rest.push(bytes[at] as char);
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && bytes[at] != b'=' && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let key = &url[start..at];
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at >= bytes.len() || bytes[at] != b'=' {
            return Err(StoreError::Config(format!("--database-url: {key:?} has no value (expected key=value)")));
        }
        at += 1;
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let mut value = Vec::new();
        if at < bytes.len() && bytes[at] == b'\'' {
            at += 1;
            loop {
                match bytes.get(at) {
                    None => return Err(StoreError::Config("--database-url: a quoted value is not closed".into())),
                    Some(b'\'') => {
                        at += 1;
                        break;
                    }
                    Some(b'\\') if at + 1 < bytes.len() => {
                        value.push(bytes[at + 1]);
                        at += 2;
                    }
                    Some(&byte) => {
                        value.push(byte);
                        at += 1;
                    }
                }
            }
        } else {
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                value.push(bytes[at]);
                at += 1;
            }
        }
        if is_ours(key) {
            let value = String::from_utf8(value)
                .map_err(|_| StoreError::Config(format!("--database-url: {key} is not UTF-8")))?;
            taken.push((key.to_string(), value));
        } else {
            rest.push_str(&url[start..at]);
        }
    }
    Ok((rest, taken))
}

#[expect(
    clippy::indexing_slicing,
    reason = "`at` stays below bytes.len() (the loop condition), and `%` is read with its two digits only when they are there"
)]
fn percent_decode(text: &str) -> Result<String, StoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| StoreError::Config("--database-url: a bad %-escape in the query".into()))?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StoreError::Config("--database-url: the query is not UTF-8".into()))
}

/// What is checked of the server's certificate. Without `chain` (prefer, require) any
/// certificate is taken, but the handshake's signatures are still checked: the key exchange is
/// real, only the certificate's identity is taken on trust. With `chain` (verify-ca,
/// verify-full) it must reach a root of `sslrootcert`; `check_name` (verify-full) also wants
/// the host's name in it. rustls checks the chain before the name, so a name mismatch means the
/// chain already passed.
#[derive(Debug)]
struct CertificatePolicy {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for CertificatePolicy {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS hook, made for each host it connects to.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // A Unix socket has no host name; PostgreSQL never offers TLS there, so the name is
        // only needed when a handshake really happens.
        let name = ServerName::try_from(domain.to_string()).ok();
        Ok(RustlsConnect { config: self.config.clone(), name, domain: domain.to_string() })
    }
}

/// One host's TLS connector.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
    domain: String,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{:?} is not a host name for TLS", self.domain))
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        match connection.peer_certificates().and_then(|chain| chain.first()).and_then(|cert| end_point_hash(cert)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its signature's hash function
/// (SHA-256 in place of MD5 and SHA-1). None for algorithms with no single hash (Ed25519,
/// RSA-PSS): the login then goes without channel binding, as with libpq.
fn end_point_hash(certificate: &[u8]) -> Option<Vec<u8>> {
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: [u8; 6] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_algorithm_oid(certificate)?;
    let hash = match oid {
        // md5, sha1, sha256 with RSA; ecdsa-with-SHA1, ecdsa-with-SHA256
        [prefix @ .., 0x04 | 0x05 | 0x0b] if prefix == RSA => 256,
        [prefix @ .., 0x01] if prefix == ECDSA => 256,
        [prefix @ .., 0x03, 0x02] if prefix == ECDSA => 256,
        [prefix @ .., 0x0c] if prefix == RSA => 384,
        [prefix @ .., 0x03, 0x03] if prefix == ECDSA => 384,
        [prefix @ .., 0x0d] if prefix == RSA => 512,
        [prefix @ .., 0x03, 0x04] if prefix == ECDSA => 512,
        _ => return None,
    };
    Some(match hash {
        256 => sha2::Sha256::digest(certificate).to_vec(),
        384 => sha2::Sha384::digest(certificate).to_vec(),
        _ => sha2::Sha512::digest(certificate).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (the SEQUENCE after `tbsCertificate`), from DER.
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der_element(der, 0x30)?;
    let (_, after_tbs) = der_element(certificate, 0x30)?;
    let (algorithm, _) = der_element(after_tbs, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    Some(oid)
}

/// One DER element with `tag` at the start of `input`: (its contents, what follows it).
#[expect(clippy::indexing_slicing, reason = "`count` is checked against rest.len() before the slices")]
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length_byte, rest) = rest.split_first()?;
    let (length, rest) = if length_byte < 0x80 {
        (length_byte as usize, rest)
    } else {
        let count = (length_byte & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |length, &byte| (length << 8) | byte as usize);
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some(rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_keys_come_out_of_urls_and_the_rest_stays() {
        let (rest, taken) =
            split_ssl_keys("postgres://u:p%40ss@db.example:5432/obol?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(rest, "postgres://u:p%40ss@db.example:5432/obol?application_name=x");
        assert_eq!(taken, vec![("sslmode".into(), "verify-full".into()), ("sslrootcert".into(), "/etc/ca.pem".into())]);
        let (rest, taken) = split_ssl_keys("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(taken, vec![("sslmode".into(), "require".into())]);
    }

    #[test]
    fn ssl_keys_come_out_of_key_value_strings() {
        let (rest, taken) =
            split_ssl_keys("host=db user=obol sslmode = verify-ca sslrootcert='/my certs/ca\\'s.pem' dbname=x")
                .unwrap();
        assert_eq!(rest.split_whitespace().collect::<Vec<_>>(), ["host=db", "user=obol", "dbname=x"]);
        assert_eq!(
            taken,
            vec![("sslmode".into(), "verify-ca".into()), ("sslrootcert".into(), "/my certs/ca's.pem".into())]
        );
        assert!(split_ssl_keys("host=db sslrootcert='open").is_err());
        assert!(split_ssl_keys("host").is_err());
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let message = |url: &str| match parse(url) {
            Err(StoreError::Config(message)) => message,
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{url} was accepted"),
        };
        assert!(message("postgres://h/db?sslmode=allow").contains("not one of"));
        assert!(message("postgres://h/db?sslcert=/c.pem").contains("client certificates are not supported"));
        assert!(
            message("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem").contains("/nonexistent.pem")
        );
        assert!(message("postgres://h/db?sslmode=verify-ca&sslrootcert=system").contains("not supported"));
        let password = message("postgres://u:secret@h/db?connect_timeout=forever");
        assert!(!password.contains("secret"), "{password}");
        for mode in ["disable", "prefer", "require"] {
            assert!(parse(&format!("postgres://h/db?sslmode={mode}")).is_ok());
        }
    }

    #[test]
    fn channel_binding_hash_follows_the_signature_algorithm() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap().self_signed(&key).unwrap();
        let der = certificate.der();
        assert_eq!(end_point_hash(der), Some(sha2::Sha384::digest(der).to_vec()));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(end_point_hash(certificate.der()), Some(sha2::Sha256::digest(certificate.der()).to_vec()));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(end_point_hash(certificate.der()), None);
        assert_eq!(end_point_hash(&der[..der.len() / 2]), None);
        assert_eq!(end_point_hash(&[]), None);
    }
}
