//! Goal: obol interoperates with independent implementations: pyotp (TOTP codes and otpauth
//! URIs) and the PyPI `http-message-signatures` library (RFC 9421 signatures, both ways).
//! Method: the real `obol serve`; the Python side runs `tests/interop/interop.py` in the virtual
//! environment `scripts/test` prepares (OBOL_PYTHON). Without it the test says it skipped, except
//! under CI=true, where it fails.

use std::path::PathBuf;
use std::process::{Child, Command};

use axum::http::HeaderMap;
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::SigningKey;
use obol_http::httpsig::{Message, content_digest, sign_request};
use serde_json::{Value, json};

mod support;

fn python() -> Option<String> {
    match std::env::var("OBOL_PYTHON") {
        Ok(path) => Some(path),
        Err(_) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs OBOL_PYTHON (scripts/test sets it)");
            eprintln!("SKIPPED: Python interoperability tests (run them through ./scripts/test)");
            None
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/interop.py")
}

fn run_python(python: &str, args: &[&str]) -> String {
    let output = Command::new(python).arg(script()).args(args).output().expect("run python");
    assert!(output.status.success(), "interop.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

struct Server {
    child: Child,
    base: String,
    operator: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("obol-interop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let launched = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let (child, base, operator) = (launched.child, launched.base, launched.key.unwrap_or_default());
    Server { child, base, operator, dir }
}

async fn post(base: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
    let response = obol_client::http_client(None)
        .unwrap()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn holder_with_accounts(server: &Server) -> String {
    post(&server.base, &server.operator, "/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"}))
        .await;
    let (_, key) = post(&server.base, &server.operator, "/v1/principals/100/keys", json!({})).await;
    for body in [
        json!({"id": "9", "asset_code": "USD", "asset_scale": 2}),
        json!({"id": "1", "asset_code": "USD", "asset_scale": 2, "owner_id": "100"}),
        json!({"id": "2", "asset_code": "USD", "asset_scale": 2}),
    ] {
        post(&server.base, &server.operator, "/v1/accounts", body).await;
    }
    post(&server.base, &server.operator, "/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "1000", "asset_code": "USD", "asset_scale": 2})).await;
    key["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyotp_reads_obols_enrolment_and_obol_accepts_pyotps_code() {
    let Some(python) = python() else { return };
    let server = serve("totp");
    let holder = holder_with_accounts(&server).await;
    let (status, enrollment) = post(&server.base, &holder, "/v1/principals/100/totp", json!({})).await;
    assert_eq!(status, 201);
    let parsed: Value =
        serde_json::from_str(&run_python(&python, &["totp-parse", enrollment["otpauth_uri"].as_str().unwrap()]))
            .unwrap();
    assert_eq!(parsed["secret"], enrollment["secret_base32"]);
    assert_eq!(parsed["issuer"], "obol");
    assert_eq!(parsed["name"], "Alice");
    assert_eq!(
        (parsed["digits"].as_u64(), parsed["interval"].as_u64(), parsed["digest"].as_str()),
        (Some(6), Some(30), Some("sha1"))
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let code = run_python(&python, &["totp-now", enrollment["secret_base32"].as_str().unwrap(), &now]);
    let (status, answer) = post(&server.base, &holder, "/v1/principals/100/totp/confirm", json!({"code": code})).await;
    assert_eq!(status, 200, "obol accepts pyotp's code: {answer}");
    let (status, _) = post(&server.base, &holder, "/v1/principals/100/totp/confirm", json!({"code": code})).await;
    assert_ne!(status, 200, "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_message_signatures_from_pypi_signs_a_payment_obol_accepts() {
    let Some(python) = python() else { return };
    let server = serve("sig-in");
    let holder = holder_with_accounts(&server).await;
    let seed = [21u8; 32];
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "py-device", "x": Base64UrlUnpadded::encode_string(&public)});
    let (status, _) = post(&server.base, &holder, "/v1/principals/100/devices", json!({"jwk": jwk})).await;
    assert_eq!(status, 201);
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let body = json!({"id": "77", "debit_account_id": "1", "credit_account_id": "2", "amount": "5", "asset_code": "USD", "asset_scale": 2}).to_string();
    let answer = run_python(&python, &["sign-and-pay", &server.base, "py-device", &seed_hex, &body]);
    assert!(answer.starts_with("201"), "obol accepts the Python signature: {answer}");
}

#[test]
fn http_message_signatures_from_pypi_verifies_a_signature_obol_makes() {
    let Some(python) = python() else { return };
    let key = SigningKey::from_bytes(&[33u8; 32]);
    let body = r#"{"id":"5","amount":"1"}"#;
    let mut headers = HeaderMap::new();
    headers.insert("host", "obol.example".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("content-digest", content_digest(body.as_bytes()).parse().unwrap());
    let message = Message {
        method: "POST",
        scheme: "https",
        authority: "obol.example",
        path: "/v1/transfers",
        query: None,
        headers: &headers,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (input, signature) = sign_request(
        &key,
        "rust-device",
        &["@method", "@target-uri", "content-digest", "content-type"],
        now,
        Some("n-1"),
        &message,
    )
    .unwrap();
    let public_hex: String = key.verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let answer = run_python(
        &python,
        &[
            "verify",
            "https://obol.example/v1/transfers",
            &input,
            &signature,
            &content_digest(body.as_bytes()),
            "application/json",
            body,
            &public_hex,
        ],
    );
    assert_eq!(answer, "verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_webauthn_from_pypi_registers_a_passkey_and_approves_a_payment() {
    let Some(python) = python() else { return };
    let server = serve("webauthn");
    let holder = holder_with_accounts(&server).await;
    let origin = "http://localhost:8402";
    let state_file = server.dir.join("soft-webauthn.json");
    let state_path = state_file.to_str().unwrap().to_string();
    let (status, start) = post(&server.base, &holder, "/v1/principals/100/passkeys", json!({})).await;
    assert_eq!(status, 200, "{start}");
    std::fs::create_dir_all(&server.dir).unwrap();
    let credential = run_python(&python, &["webauthn-register", &start["options"].to_string(), origin, &state_path]);
    let credential: Value = serde_json::from_str(&credential).unwrap();
    let (status, registered) = post(
        &server.base,
        &holder,
        "/v1/principals/100/passkeys/finish",
        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_eq!(status, 201, "obol accepts soft-webauthn's registration: {registered}");

    let payment = json!({"id": "30", "debit_account_id": "1", "credit_account_id": "2", "amount": "7", "asset_code": "USD", "asset_scale": 2});
    let approve = |mode: &'static str| {
        let base = server.base.clone();
        let holder = holder.clone();
        let python = python.clone();
        let state_path = state_path.clone();
        let payment = payment.clone();
        async move {
            let (status, problem) = post(&base, &holder, "/v1/transfers", payment).await;
            assert_eq!((status, problem["code"].as_str()), (403, Some("requires_action")), "{problem}");
            let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
            let (_, start) = post(&base, &holder, &format!("/v1/challenges/{challenge}/passkey"), json!({})).await;
            let assertion =
                run_python(&python, &["webauthn-assert", &start["options"].to_string(), origin, &state_path, mode]);
            let assertion: Value = serde_json::from_str(&assertion).unwrap();
            let body = json!({"passkey": {"ceremony_id": start["ceremony_id"], "credential": assertion}});
            let (status, answer) = post(&base, &holder, &format!("/v1/challenges/{challenge}/approve"), body).await;
            (status, answer, challenge)
        }
    };
    let (status, answer, _) = approve("no-uv").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("factor_check_failed")),
        "no user verification, no approval: {answer}"
    );
    let (status, answer, challenge) = approve("uv").await;
    assert_eq!(status, 200, "{answer}");
    let response = obol_client::http_client(None)
        .unwrap()
        .post(format!("{}/v1/transfers", server.base))
        .bearer_auth(&holder)
        .header("obol-approval", challenge)
        .json(&payment)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_openapi_document_is_valid_and_schemathesis_finds_no_server_error_in_it() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("obol-interop-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let launched = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--rate-limit".as_ref(),
        "0".as_ref(),
        "--auth-failure-limit".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let server = Server { child: launched.child, base: launched.base, operator: launched.key.unwrap_or_default(), dir };
    // The document is public: fetched without a key.
    let document = obol_client::http_client(None)
        .unwrap()
        .get(format!("{}/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&document).unwrap();
    for list in ["/v1/accounts", "/v1/transfers", "/v1/tabs", "/v1/principals", "/v1/risk/reviews"] {
        assert!(parsed["paths"][list]["get"].is_object(), "the document lists GET {list}, so schemathesis covers it");
    }
    let schema_path = server.dir.join("openapi.json");
    std::fs::write(&schema_path, &document).unwrap();
    // An independent validator of the OpenAPI 3.1 specification accepts the document as served.
    let validator = std::path::Path::new(&python).with_file_name("openapi-spec-validator");
    let validated = Command::new(validator).arg(&schema_path).output().expect("run openapi-spec-validator");
    assert!(
        validated.status.success(),
        "openapi-spec-validator refused the served document:\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let output = Command::new(schemathesis)
        .args(["run", schema_path.to_str().unwrap(), "--url", &server.base])
        .args(["-H", &format!("Authorization: Bearer {}", server.operator)])
        .args(["--checks", "not_a_server_error", "--max-examples", "25", "--seed", "20261125"])
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found a server error:\n{report}");
    assert!(report.contains("passed"), "{report}");
    if let Some(line) = report.lines().find(|l| l.contains("generated,")) {
        eprintln!("schemathesis: {}", line.trim());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camt053_statement_validates_against_the_iso_20022_schema_and_adds_up() {
    let Some(python) = python() else { return };
    let xsd = match std::env::var("OBOL_CAMT053_XSD") {
        Ok(path) => path,
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true needs OBOL_CAMT053_XSD (scripts/test sets it)"
            );
            eprintln!("SKIPPED: camt.053 schema validation (run it through ./scripts/test)");
            return;
        }
    };
    let server = serve("camt053");
    let holder = holder_with_accounts(&server).await;
    // Micropayments out of account 1 (debits) and back in (credits), a pending transfer that
    // books nothing until posted (part of it), and a voided one that never books.
    for id in 10..40u32 {
        let (status, body) = post(
            &server.base,
            &holder,
            "/v1/transfers",
            json!({"id": id.to_string(),
            "debit_account_id": "1", "credit_account_id": "2", "amount": "3", "asset_code": "USD", "asset_scale": 2}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let refund = json!({"id": "50", "debit_account_id": "2", "credit_account_id": "1", "amount": "7", "asset_code": "USD", "asset_scale": 2});
    assert_eq!(post(&server.base, &server.operator, "/v1/transfers", refund).await.0, 201);
    for (id, flags) in [("60", json!(["pending"])), ("61", json!(["pending"]))] {
        let pending = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": "100",
            "asset_code": "USD", "asset_scale": 2, "flags": flags, "timeout_s": 3600});
        assert_eq!(post(&server.base, &server.operator, "/v1/transfers", pending).await.0, 201);
    }
    let post_part = json!({"id": "62", "pending_id": "60", "debit_account_id": "1", "credit_account_id": "2",
        "amount": "40", "asset_code": "USD", "asset_scale": 2, "flags": ["post_pending"]});
    let (status, body) = post(&server.base, &server.operator, "/v1/transfers", post_part).await;
    assert_eq!(status, 201, "{body}");
    let void = json!({"id": "63", "pending_id": "61", "debit_account_id": "1", "credit_account_id": "2",
        "amount": "0", "asset_code": "USD", "asset_scale": 2, "flags": ["void_pending"]});
    let (status, body) = post(&server.base, &server.operator, "/v1/transfers", void).await;
    assert_eq!(status, 201, "{body}");

    let http = obol_client::http_client(None).unwrap();
    let response =
        http.get(format!("{}/v1/accounts/1/statement", server.base)).bearer_auth(&holder).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
    let xml = response.text().await.unwrap();
    let file = server.dir.join("statement.xml");
    std::fs::write(&file, &xml).unwrap();
    let checked: Value =
        serde_json::from_str(&run_python(&python, &["camt053-check", &xsd, file.to_str().unwrap()])).unwrap();
    assert_eq!(checked["valid"], true, "{checked}");
    // Funded 10.00; 30 payments of 0.03 out, 0.07 back, 0.40 posted of a 1.00 hold, a void.
    assert_eq!(checked["opening"], "0.00");
    assert_eq!(checked["closing"], "8.77", "{checked}");
    assert_eq!(checked["entries_sum"], "8.77", "opening + entries = closing");
    assert_eq!(checked["transactions_sum"], "8.77", "the batches list every transfer");
    assert_eq!(checked["transactions"], 33, "funding, 30 payments, the refund, the post");
    assert_eq!(checked["batch_counts"], 33);
    let (_, balance) = {
        let response =
            http.get(format!("{}/v1/accounts/1/balance", server.base)).bearer_auth(&holder).send().await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    let posted = balance["credits_posted"].as_str().unwrap().parse::<i64>().unwrap()
        - balance["debits_posted"].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(posted, 877, "the closing balance is the ledger's posted balance");
    // A period that starts after the funding opens with it.
    let funding: Value = http
        .get(format!("{}/v1/transfers/1", server.base))
        .bearer_auth(&holder)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after_funding = funding["timestamp"].as_str().unwrap().parse::<u64>().unwrap() + 1;
    let response = http
        .get(format!("{}/v1/accounts/1/statement?from={after_funding}", server.base))
        .bearer_auth(&holder)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    std::fs::write(&file, response.text().await.unwrap()).unwrap();
    let checked: Value =
        serde_json::from_str(&run_python(&python, &["camt053-check", &xsd, file.to_str().unwrap()])).unwrap();
    assert_eq!(
        (
            checked["valid"].clone(),
            checked["opening"].clone(),
            checked["closing"].clone(),
            checked["transactions"].clone()
        ),
        (json!(true), json!("10.00"), json!("8.77"), json!(32)),
        "{checked}"
    );
    // Someone else's account is not found; an account in nano-dollars with a sub-10^-5 amount
    // is refused with the way out named.
    let response =
        http.get(format!("{}/v1/accounts/2/statement", server.base)).bearer_auth(&holder).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    for body in [
        json!({"id": "90", "asset_code": "USD", "asset_scale": 9}),
        json!({"id": "91", "asset_code": "USD", "asset_scale": 9}),
    ] {
        post(&server.base, &server.operator, "/v1/accounts", body).await;
    }
    let nano = json!({"id": "92", "debit_account_id": "90", "credit_account_id": "91", "amount": "1", "asset_code": "USD", "asset_scale": 9});
    assert_eq!(post(&server.base, &server.operator, "/v1/transfers", nano).await.0, 201);
    let response = http
        .get(format!("{}/v1/accounts/91/statement", server.base))
        .bearer_auth(&server.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("JSON export"));
    // Through the CLI, into a file, and valid too.
    let out = server.dir.join("cli.xml");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["account", "statement", "1", "--out", out.to_str().unwrap()])
        .env("OBOL_SERVER", &server.base)
        .env("OBOL_API_KEY", &holder)
        .env("OBOL_CONFIG", server.dir.join("no-profiles.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    let checked: Value =
        serde_json::from_str(&run_python(&python, &["camt053-check", &xsd, out.to_str().unwrap()])).unwrap();
    assert_eq!((checked["valid"].clone(), checked["closing"].clone()), (json!(true), json!("8.77")), "{checked}");
    // The person's data export writes a statement per account beside the JSON.
    let dir = server.dir.join("export");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["principal", "export", "100", "--camt053-dir", dir.to_str().unwrap()])
        .env("OBOL_SERVER", &server.base)
        .env("OBOL_API_KEY", &holder)
        .env("OBOL_CONFIG", server.dir.join("no-profiles.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let export: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(export["profile"]["name"], "Alice");
    let statement = dir.join("account-1.camt053.xml");
    let checked: Value =
        serde_json::from_str(&run_python(&python, &["camt053-check", &xsd, statement.to_str().unwrap()])).unwrap();
    assert_eq!((checked["valid"].clone(), checked["closing"].clone()), (json!(true), json!("8.77")), "{checked}");
}
