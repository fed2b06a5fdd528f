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

/// A CA and a server certificate it signed for localhost and 127.0.0.1, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn ca_signed_server(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "obol test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, server_cert.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

/// The `obol` client, with only the environment this test gives it.
fn cli(config: &std::path::Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap()).env("OBOL_CONFIG", config);
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Goal: the client commands reach a server started with `--tls-cert` over HTTPS: refused with
/// a reason and exit code 3 while the server's CA is unknown, through `--ca-cert` once it is
/// named, and through a profile `obol login` wrote (which keeps the key in a file of mode 0600,
/// never in the config and never on screen).
#[test]
fn the_cli_reaches_an_https_server_through_its_ca_and_a_profile() {
    let dir = std::env::temp_dir().join(format!("obol-tls-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = ca_signed_server(&dir);
    let launched = support::launch([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join("data").to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let _server = Server(launched.child);
    let url = launched.base.clone();
    let operator = launched.key.unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let config = dir.join("config").join("config.toml");
    let ca = ca.to_str().unwrap();

    let untrusted = cli(
        &config,
        &["account", "create", "--id", "7", "--asset", "EUR/2", "--server", &url],
        &[("OBOL_API_KEY", &operator)],
        None,
    );
    assert_eq!(untrusted.status.code(), Some(3), "{}", text(&untrusted.stderr));
    assert!(text(&untrusted.stderr).contains("UnknownIssuer") && text(&untrusted.stderr).contains("--ca-cert"));

    let created = cli(
        &config,
        &["account", "create", "--id", "7", "--asset", "EUR/2", "--server", &url, "--ca-cert", ca],
        &[("OBOL_API_KEY", &operator)],
        None,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let account: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(account["id"], "7", "JSON when stdout is not a terminal");

    // The key comes on standard input; nothing prints it.
    let login = cli(
        &config,
        &["login", "--server", &url.replace("127.0.0.1", "localhost"), "--ca-cert", ca, "--profile", "staging"],
        &[],
        Some(&format!("{operator}\n")),
    );
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(text(&login.stdout).contains("profile staging"), "{}", text(&login.stdout));
    assert!(!text(&login.stdout).contains(&operator) && !text(&login.stderr).contains(&operator));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(!written.contains(&operator), "the config holds no key: {written}");
    let key_file = dir.join("config").join("keys").join("staging.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The profile alone: no flags, no key in the environment.
    let balance = cli(&config, &["balance", "7", "--json"], &[], None);
    assert!(balance.status.success(), "{}", text(&balance.stderr));
    let balance: serde_json::Value = serde_json::from_slice(&balance.stdout).unwrap();
    assert_eq!(balance["account_id"], "7");
    let shown = cli(&config, &["config", "show"], &[], None);
    assert!(text(&shown.stdout).contains("read from") && !text(&shown.stdout).contains(&operator));
    let missing = cli(&config, &["balance", "7", "--profile", "nosuch"], &[], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no profile \"nosuch\""), "{}", text(&missing.stderr));
    let refused = cli(&config, &["config", "set", "api_key", "obol_live_x"], &[], None);
    assert!(!refused.status.success() && text(&refused.stderr).contains("never holds a key"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Goal: `obol ... | head -1` ends quietly: a closed pipe is not a panic.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let dir = std::env::temp_dir().join(format!("obol-pipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    let mut text_config = String::new();
    for n in 0..20_000 {
        text_config.push_str(&format!("[profiles.p{n}]\nserver = \"http://127.0.0.1:{}\"\n", 1000 + n % 50_000));
    }
    std::fs::write(&config, text_config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["config", "list"])
        .env("OBOL_CONFIG", &config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("panicked"), "{}", text(&output.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
