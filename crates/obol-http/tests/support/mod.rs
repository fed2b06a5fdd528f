//! Shared by the router tests: a fresh engine on a scratch SQLite store with its operator key,
//! and small request helpers.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use obol_app::auth::bootstrap_operator;
use obol_http::{AppState, app};
use obol_store::{Engine, Node, SqliteStore};
use serde_json::Value;
use tower::ServiceExt;

/// A directory removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running app: router, engine, the operator's key, and where it keeps its data.
pub struct Started {
    /// The router under test.
    pub router: Router,
    /// Its engine (for direct reads).
    pub engine: Engine,
    /// The state the router serves (for server tasks such as the settlement sweep).
    pub state: AppState,
    /// The bootstrap operator's key.
    pub operator: String,
    /// Removed at the end of the test.
    pub scratch: Scratch,
}

/// A fresh app on a scratch SQLite store.
pub fn start(tag: &str) -> Started {
    start_with(tag, |state| state)
}

/// A fresh app whose state `configure` adjusts first.
pub fn start_with(tag: &str, configure: impl FnOnce(AppState) -> AppState) -> Started {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "obol-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut node = Node::open(SqliteStore::open(&dir).expect("open store"), 3).expect("open node");
    let operator = bootstrap_operator(&mut node, &obol_app::SystemEnv)
        .expect("bootstrap")
        .expect("a fresh store gets an operator key");
    let engine = Engine::start(node);
    let state = configure(AppState::new(engine.clone(), "http").with_instance_id("local").expect("a valid id"));
    let router = app(state.clone());
    Started { router, engine, state, operator, scratch: Scratch(dir) }
}

/// Sends a request; answers the status and the JSON body (or Null).
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// POSTs JSON with a bearer key, optionally with an `Obol-Approval`.
pub async fn post(router: &Router, key: &str, path: &str, body: Value, approval: Option<&str>) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(approval) = approval {
        builder = builder.header("obol-approval", approval);
    }
    send(router, builder.body(Body::from(body.to_string())).expect("request")).await
}

/// A payer and a payee: holder 100 (key `holder`) owns account 1, funded with `funds` USD at
/// scale 9 and unable to overdraw; merchant 300 (key `merchant`) owns account 2; the holder's
/// device 55 signs with `device`.
pub struct Parties {
    /// The app.
    pub started: Started,
    /// The holder's API key.
    pub holder: String,
    /// The merchant's API key.
    pub merchant: String,
    /// The holder's device key.
    pub device: ed25519_dalek::SigningKey,
}

/// Sets up [`Parties`] on a fresh app.
pub async fn parties(tag: &str, funds: &str, device_seed: u8) -> Parties {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use serde_json::json;
    let started = start(tag);
    let op = |path: &str, body: Value| {
        let router = started.router.clone();
        let operator = started.operator.clone();
        let path = path.to_string();
        async move {
            let (status, value) = post(&router, &operator, &path, body, None).await;
            assert!(status.is_success(), "{path}: {status} {value}");
            value
        }
    };
    op("/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
    op("/v1/principals", json!({"id": "300", "role": "merchant", "name": "Shop"})).await;
    let holder = op("/v1/principals/100/keys", json!({})).await["key"].as_str().unwrap().to_string();
    let merchant = op("/v1/principals/300/keys", json!({})).await["key"].as_str().unwrap().to_string();
    op("/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": 9})).await;
    op("/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": 9, "owner_id": "100", "flags": ["debits_must_not_exceed_credits"]})).await;
    op("/v1/accounts", json!({"id": "2", "asset_code": "USD", "asset_scale": 9, "owner_id": "300"})).await;
    op("/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": funds, "asset_code": "USD", "asset_scale": 9})).await;
    let device = ed25519_dalek::SigningKey::from_bytes(&[device_seed; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "reader", "x": Base64UrlUnpadded::encode_string(&device.verifying_key().to_bytes())});
    op("/v1/principals/100/devices", json!({"id": "55", "jwk": jwk})).await;
    Parties { started, holder, merchant, device }
}

/// A `POST /v1/transfers` of `body` signed by the device key `kid` as a device signs it (RFC 9421
/// over the method, target URI, content digest and type, and `Obol-Approval` when given). `nonce`
/// must differ between signatures, or the replay guard refuses the second.
pub fn signed_transfer(
    key: &ed25519_dalek::SigningKey,
    kid: &str,
    body: &Value,
    nonce: &str,
    approval: Option<&str>,
) -> Request<Body> {
    use axum::http::HeaderMap;
    use obol_http::httpsig::{Message, content_digest, sign_request};
    let body = body.to_string();
    let mut headers = HeaderMap::new();
    headers.insert("host", "obol.test".parse().expect("host"));
    headers.insert("content-type", "application/json".parse().expect("content type"));
    headers.insert("content-digest", content_digest(body.as_bytes()).parse().expect("digest"));
    let mut components = vec!["@method", "@target-uri", "content-digest", "content-type"];
    if let Some(approval) = approval {
        headers.insert("obol-approval", approval.parse().expect("approval"));
        components.push("obol-approval");
    }
    let message = Message {
        method: "POST",
        scheme: "http",
        authority: "obol.test",
        path: "/v1/transfers",
        query: None,
        headers: &headers,
    };
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let (input, signature) = sign_request(key, kid, &components, now_s, Some(nonce), &message).expect("sign");
    let mut builder = Request::builder().method(Method::POST).uri("/v1/transfers");
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    builder.header("signature-input", input).header("signature", signature).body(Body::from(body)).expect("request")
}
