//! `sslmode` and `sslrootcert` in the PostgreSQL URL, against the real local server: the
//! connection is encrypted when asked (PostgreSQL's own `pg_stat_ssl` says so), a certificate
//! from an unknown CA is refused under verify-ca, and a host name the certificate does not name
//! is refused under verify-full.

mod common;

use common::{ScratchDir, fresh_schema, pg_url, postgres_available};
use obol_store::{PgStore, StoreError, connect_postgres};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// Replaces the URL's host (`...@host:port/...` or `//host:port/...`).
fn with_host(url: &str, host: &str) -> String {
    let after_scheme = url.find("://").map(|at| at + 3).expect("a postgres:// URL");
    let authority_end = url[after_scheme..].find('/').map_or(url.len(), |at| after_scheme + at);
    let host_start = url[after_scheme..authority_end].rfind('@').map_or(after_scheme, |at| after_scheme + at + 1);
    let host_end = url[host_start..authority_end].find(':').map_or(authority_end, |at| host_start + at);
    format!("{}{host}{}", &url[..host_start], &url[host_end..])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Whether the connection made from `url` is encrypted, as the server sees it.
fn encrypted(url: &str) -> Result<bool, StoreError> {
    runtime().block_on(async {
        let client = connect_postgres(url).await?;
        let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
        Ok(row.get(0))
    })
}

fn show(setting: &str) -> String {
    runtime().block_on(async {
        let client = connect_postgres(&pg_url()).await.unwrap();
        client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get(0)
    })
}

/// Whether the server offers TLS; under CI=true it must.
fn tls_offered() -> bool {
    if show("ssl") == "on" {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true but the PostgreSQL at {} has ssl = off: the TLS tests must not be skipped",
        pg_url()
    );
    eprintln!("SKIPPED: PostgreSQL TLS tests (the server has ssl = off)");
    false
}

#[test]
fn sslmode_require_encrypts_and_disable_does_not() {
    if !postgres_available() || !tls_offered() {
        return;
    }
    assert!(encrypted(&with_params(&pg_url(), "sslmode=require")).unwrap());
    assert!(encrypted(&with_params(&pg_url(), "sslmode=prefer")).unwrap());
    assert!(!encrypted(&with_params(&pg_url(), "sslmode=disable")).unwrap());

    // The whole store over TLS: write, reopen, read back.
    let schema = fresh_schema("tls");
    let url = with_params(&pg_url(), "sslmode=require");
    {
        let mut store = PgStore::open_in_schema(&url, &schema).unwrap();
        obol_store::Store::append(&mut store, 1, b"over tls").unwrap();
    }
    let mut store = PgStore::open_in_schema(&url, &schema).unwrap();
    let mut seen = Vec::new();
    obol_store::Store::replay(&mut store, &mut |seq, body| {
        seen.push((seq, body.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(1, b"over tls".to_vec())]);
    drop(store);
    PgStore::drop_schema(&url, &schema).unwrap();
}

#[test]
fn verify_ca_trusts_only_the_given_roots_and_verify_full_checks_the_name() {
    if !postgres_available() || !tls_offered() {
        return;
    }
    let scratch = ScratchDir::new("pg-tls");
    // A CA that signed nothing the server holds.
    let stranger = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let stranger = params.self_signed(&stranger).unwrap();
    let stranger_file = scratch.path().join("stranger.pem");
    std::fs::write(&stranger_file, stranger.pem()).unwrap();
    let refused =
        encrypted(&with_params(&pg_url(), &format!("sslmode=verify-ca&sslrootcert={}", stranger_file.display())))
            .expect_err("a server certificate from an unknown CA was accepted");
    assert!(format!("{refused}").contains("certificate"), "{refused}");

    // The server's own certificate file: trusted as the root, it must be accepted.
    let server_file = show("ssl_cert_file");
    let server_file = std::path::Path::new(&server_file);
    let server_file = if server_file.is_absolute() {
        server_file.to_path_buf()
    } else {
        std::path::Path::new(&show("data_directory")).join(server_file)
    };
    let Ok(pem) = std::fs::read(&server_file) else {
        eprintln!("SKIPPED: verify-ca/verify-full acceptance ({} is not readable here)", server_file.display());
        return;
    };
    let copy = scratch.path().join("server.pem");
    std::fs::write(&copy, &pem).unwrap();
    let verify_ca = with_params(&pg_url(), &format!("sslmode=verify-ca&sslrootcert={}", copy.display()));
    assert!(encrypted(&verify_ca).unwrap(), "verify-ca with the server's own certificate as root");

    // verify-full: succeeds on a host name the certificate names, fails on one it does not.
    let leaf = CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap();
    let parsed = rustls::server::ParsedCertificate::try_from(&leaf).unwrap();
    let names = |host: &str| {
        rustls::client::verify_server_name(&parsed, &rustls::pki_types::ServerName::try_from(host).unwrap()).is_ok()
    };
    for (host, named) in [("localhost", names("localhost")), ("127.0.0.1", names("127.0.0.1"))] {
        let url =
            with_params(&with_host(&pg_url(), host), &format!("sslmode=verify-full&sslrootcert={}", copy.display()));
        match encrypted(&url) {
            Ok(ssl) => assert!(named && ssl, "verify-full accepted {host}, which the certificate does not name"),
            Err(error) => {
                assert!(!named, "verify-full refused {host}, which the certificate names: {error}");
                assert!(format!("{error}").contains("certificate"), "{error}");
            }
        }
    }
}
