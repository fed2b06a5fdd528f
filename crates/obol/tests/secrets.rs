//! Goal: no secret ever reaches the logs or sits in the database in the clear: API keys, TOTP
//! seeds, TOTP codes, recovery codes, device private keys.
//! Method: run the real `obol serve` with every log level and the access log on (`OBOL_LOG=trace`,
//! `OBOL_ACCESS_LOG=true`), drive a full identity flow over HTTP (keys, rotation, TOTP enrolment
//! and confirmation, recovery codes, a device's signed payments, a step-up approval, a failed
//! check), stop it, then search the captured log and the SQLite file for every secret the flow
//! handled.

use std::process::{Command, Stdio};

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::SigningKey;
use obol_http::httpsig::{Message, content_digest, sign_request};
use serde_json::{Value, json};

mod support;

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_identity_flow_leaves_no_secret_in_logs_or_storage() {
    let dir = std::env::temp_dir().join(format!("obol-secrets-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let launched = support::launch_with(
        [std::ffi::OsStr::new("--listen"), "127.0.0.1:0".as_ref(), "--data-dir".as_ref(), dir.join("data").as_os_str()],
        &[("OBOL_LOG", "trace"), ("OBOL_ACCESS_LOG", "true")],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let (mut child, base, operator) = (launched.child, launched.base, launched.key.unwrap_or_default());
    let authority = base.trim_start_matches("http://").to_string();
    let http = obol_client::http_client(None).unwrap();
    let mut secrets: Vec<String> = vec![operator.clone()];
    let call = |key: String, path: String, body: Value| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let response = http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    call(operator.clone(), "/v1/principals".into(), json!({"id": "100", "role": "holder", "name": "Alice"})).await;
    let (_, key) = call(operator.clone(), "/v1/principals/100/keys".into(), json!({})).await;
    let holder = key["key"].as_str().unwrap().to_string();
    secrets.push(holder.clone());
    let (_, rotated) =
        call(holder.clone(), format!("/v1/keys/{}/rotate", key["key_id"].as_str().unwrap()), json!({})).await;
    let holder = rotated["key"].as_str().unwrap().to_string();
    secrets.push(holder.clone());
    call(operator.clone(), "/v1/accounts".into(), json!({"id": "9", "asset_code": "EUR", "asset_scale": 2})).await;
    call(
        operator.clone(),
        "/v1/accounts".into(),
        json!({"id": "1", "asset_code": "EUR", "asset_scale": 2, "owner_id": "100"}),
    )
    .await;
    call(operator.clone(), "/v1/accounts".into(), json!({"id": "2", "asset_code": "EUR", "asset_scale": 2})).await;
    call(operator.clone(), "/v1/transfers".into(), json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "5000", "asset_code": "EUR", "asset_scale": 2})).await;

    let (status, enrollment) = call(holder.clone(), "/v1/principals/100/totp".into(), json!({})).await;
    assert_eq!(status, 201, "{enrollment}");
    let seed_base32 = enrollment["secret_base32"].as_str().unwrap().to_string();
    let seed = totp_rs::Secret::try_from_base32(&seed_base32).unwrap().as_ref().to_vec();
    secrets.push(seed_base32.clone());
    let totp = totp_rs::Builder::new().with_secret(seed.clone()).build_noncompliant();
    let code = totp.generate(now_s()).to_string();
    let (status, codes) = call(holder.clone(), "/v1/principals/100/totp/confirm".into(), json!({"code": code})).await;
    assert_eq!(status, 200, "{codes}");
    secrets.push(code);
    let recovery: Vec<String> =
        codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    secrets.extend(recovery.iter().cloned());

    let device_key = SigningKey::from_bytes(&[77u8; 32]);
    secrets.push(device_key.to_bytes().iter().map(|b| format!("{b:02x}")).collect());
    secrets.push(Base64UrlUnpadded::encode_string(&device_key.to_bytes()));
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "phone", "x": Base64UrlUnpadded::encode_string(&device_key.verifying_key().to_bytes())});
    let (status, _) = call(holder.clone(), "/v1/principals/100/devices".into(), json!({"id": "50", "jwk": jwk})).await;
    assert_eq!(status, 201);
    let signed_payment = |id: &str, approval: Option<String>| {
        let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": "100", "asset_code": "EUR", "asset_scale": 2}).to_string();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("host", authority.parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("content-digest", content_digest(body.as_bytes()).parse().unwrap());
        let mut components = vec!["@method", "@target-uri", "content-digest", "content-type"];
        if let Some(approval) = &approval {
            headers.insert("obol-approval", approval.parse().unwrap());
            components.push("obol-approval");
        }
        let nonce = format!("{id}-{}", approval.is_some());
        let message = Message {
            method: "POST",
            scheme: "http",
            authority: &authority,
            path: "/v1/transfers",
            query: None,
            headers: &headers,
        };
        let (input, signature) =
            sign_request(&device_key, "phone", &components, now_s() as i64, Some(&nonce), &message).unwrap();
        let mut request = http
            .post(format!("{base}/v1/transfers"))
            .header("content-type", "application/json")
            .header("content-digest", content_digest(body.as_bytes()))
            .header("signature-input", input)
            .header("signature", signature)
            .body(body);
        if let Some(approval) = approval {
            request = request.header("obol-approval", approval);
        }
        request
    };
    let response = signed_payment("10", None).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "requires_action", "{problem}");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    let (status, _) =
        call(holder.clone(), format!("/v1/challenges/{challenge}/approve"), json!({"code": "999999"})).await;
    assert_eq!(status, 403);
    let (status, approved) =
        call(holder.clone(), format!("/v1/challenges/{challenge}/approve"), json!({"recovery_code": recovery[0]}))
            .await;
    assert_eq!(status, 200, "{approved}");
    let response = signed_payment("10", Some(challenge)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);

    // Stop gracefully so every log line is flushed.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 10, "the trace log should show the flow:\n{log}");
    let database = std::fs::read(dir.join("data").join("obol.sqlite3")).unwrap();
    let mut wal = std::fs::read(dir.join("data").join("obol.sqlite3-wal")).unwrap_or_default();
    wal.extend_from_slice(&database);
    let stored = String::from_utf8_lossy(&wal).to_string();
    for secret in &secrets {
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(!log.contains(secret_part), "a secret reached the log: {}…", &secret_part[..6]);
        assert!(!stored.contains(secret_part), "a secret sits in the database in the clear: {}…", &secret_part[..6]);
    }
    assert!(!wal.windows(seed.len()).any(|w| w == seed.as_slice()), "the raw TOTP seed sits in the database");
    let _ = std::fs::remove_dir_all(&dir);
}
