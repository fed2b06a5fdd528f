//! Goal: `obol serve --tls-cert --tls-key` speaks TLS 1.3 only, and plain HTTP is refused on a
//! non-loopback address unless the operator says `--insecure-http`.
//! Method: a self-signed certificate made with rcgen; the real binary; curl (a real third-party
//! client) trusting that certificate, once with TLS 1.3 allowed and once capped at TLS 1.2.

use std::process::{Child, Command, Output};

mod support;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Server, String) {
    let launched = support::launch(args);
    (Server(launched.child), launched.base)
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl is installed")
}

#[test]
fn https_serves_tls_1_3_only_and_plain_http_stays_on_loopback() {
    let dir = std::env::temp_dir().join(format!("obol-tls-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let data = dir.join("data");
    let (_server, url) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert!(url.starts_with("https://"), "{url}");
    let healthz = format!("{url}/healthz");
    let ok = curl(&[
        "--cacert",
        cert_path.to_str().unwrap(),
        "--tlsv1.3",
        "-w",
        " %{http_code} %{ssl_verify_result}",
        &healthz,
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(text.contains("\"ok\"") && text.ends_with(" 200 0"), "{text}");
    let old = curl(&["--cacert", cert_path.to_str().unwrap(), "--tls-max", "1.2", &healthz]);
    assert!(!old.status.success(), "TLS 1.2 must be refused");
    let plain = curl(&[&healthz.replace("https://", "http://")]);
    assert!(
        !plain.status.success() || String::from_utf8_lossy(&plain.stdout).is_empty(),
        "no plain HTTP on the TLS port"
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.join("data2"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to serve plain HTTP"));
    let (_insecure, url) =
        start(&["--listen", "0.0.0.0:0", "--insecure-http", "--data-dir", dir.join("data3").to_str().unwrap()]);
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    let _ = std::fs::remove_dir_all(&dir);
}
