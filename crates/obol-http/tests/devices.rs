//! Goal: a device authenticates each request with an RFC 9421 Ed25519 signature, pays within the
//! limits its holder set, and every way of cheating is refused with a clear problem code.
//! Method: the real router over a real engine; an operator sets up a holder with an account and
//! a device; requests are signed exactly as a device would (`httpsig::sign_request`) and then
//! replayed, aged, skewed, re-keyed, tampered with or sent by a revoked device.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::SigningKey;
use obol_http::httpsig::{Message, content_digest, sign_request};
use serde_json::{Value, json};

mod support;

const HOST: &str = "obol.test";

struct World {
    router: Router,
    operator: String,
    _scratch: support::Scratch,
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

use support::send;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwk(signing_key: &SigningKey, kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": Base64UrlUnpadded::encode_string(&signing_key.verifying_key().to_bytes())})
}

/// A signed request, with knobs for every way a test wants to bend it.
struct Signed {
    method: Method,
    path: String,
    body: Option<String>,
    created_s: i64,
    components: Vec<&'static str>,
    signing_key: SigningKey,
    kid: String,
    bare_signature: bool,
}

impl Signed {
    fn new(path: &str, body: Option<Value>, signing_key: &SigningKey, kid: &str) -> Signed {
        let method = if body.is_some() { Method::POST } else { Method::GET };
        let mut components = vec!["@method", "@target-uri"];
        if body.is_some() {
            components.extend(["content-digest", "content-type"]);
        }
        Signed {
            method,
            path: path.into(),
            body: body.map(|b| b.to_string()),
            created_s: now_s(),
            components,
            signing_key: signing_key.clone(),
            kid: kid.into(),
            bare_signature: false,
        }
    }

    /// Headers for this request: (signature headers computed over `signed_body`).
    fn headers(&self, signed_body: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(HOST));
        if let Some(body) = signed_body {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert("content-digest", HeaderValue::from_str(&content_digest(body.as_bytes())).unwrap());
        }
        let (path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let message =
            Message { method: self.method.as_str(), scheme: "http", authority: HOST, path, query, headers: &headers };
        let (input, signature) =
            sign_request(&self.signing_key, &self.kid, &self.components, self.created_s, None, &message).unwrap();
        let mut headers = headers.clone();
        headers.insert("signature-input", HeaderValue::from_str(&input).unwrap());
        let signature = if self.bare_signature {
            signature.trim_start_matches("sig1=").trim_matches(':').to_string()
        } else {
            signature
        };
        headers.insert("signature", HeaderValue::from_str(&signature).unwrap());
        headers
    }

    fn request(&self, headers: &HeaderMap, body: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder().method(self.method.clone()).uri(&self.path);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap()
    }

    fn build(&self) -> Request<Body> {
        let headers = self.headers(self.body.as_deref());
        self.request(&headers, self.body.as_deref())
    }
}

impl World {
    async fn new() -> World {
        let started = support::start("devices");
        let world = World { router: started.router, operator: started.operator, _scratch: started.scratch };
        world.op(Method::POST, "/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
        world.op(Method::POST, "/v1/principals", json!({"id": "200", "role": "holder", "name": "Bob"})).await;
        world.op(Method::POST, "/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": 2})).await;
        for (id, owner) in [("1", "100"), ("2", "200")] {
            world
                .op(Method::POST, "/v1/accounts", json!({"id": id, "asset_code": "USD", "asset_scale": 2, "owner_id": owner, "flags": ["debits_must_not_exceed_credits"]}))
                .await;
        }
        world
            .op(Method::POST, "/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "100000", "asset_code": "USD", "asset_scale": 2}))
            .await;
        world
            .op(
                Method::POST,
                "/v1/principals/100/devices",
                json!({"id": "50", "jwk": jwk(&key(7), "meter-1"),
                "limits": {"asset_code": "USD", "asset_scale": 2, "per_payment": "500", "per_day": "1000"}}),
            )
            .await;
        world
    }

    async fn op(&self, method: Method, path: &str, body: Value) -> Value {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.operator))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, value) = send(&self.router, request).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }
}

fn pay(id: u32, amount: &str) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount, "asset_code": "USD", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_device_request_pays_and_a_replay_is_refused() {
    let world = World::new().await;
    let me = Signed::new("/v1/me", None, &key(7), "meter-1");
    let (status, answer) = send(&world.router, me.build()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["credential"], "device");
    assert_eq!(answer["principal"]["id"], "100");
    let payment = Signed::new("/v1/transfers", Some(pay(10, "200")), &key(7), "meter-1");
    let request = payment.build();
    let (status, answer) = send(&world.router, request).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, problem) = send(&world.router, payment.build()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("signature_replayed")));
    let mut bare = Signed::new("/v1/transfers", Some(pay(11, "100")), &key(7), "meter-1");
    bare.bare_signature = true;
    assert_eq!(send(&world.router, bare.build()).await.0, StatusCode::CREATED, "the bare base64 form is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forgery_is_refused_with_its_own_code() {
    let world = World::new().await;
    let fresh = |id: u32| Signed::new("/v1/transfers", Some(pay(id, "10")), &key(7), "meter-1");

    let mut old = fresh(20);
    old.created_s -= 301;
    let mut future = fresh(21);
    future.created_s += 120;
    let mut wrong_key = fresh(22);
    wrong_key.signing_key = key(8);
    let mut unknown = fresh(23);
    unknown.kid = "nobody".into();
    let mut uncovered = fresh(24);
    uncovered.components = vec!["@method", "@target-uri", "content-type"];
    for (signed, status, code) in [
        (old, StatusCode::UNAUTHORIZED, "signature_expired"),
        (future, StatusCode::UNAUTHORIZED, "signature_clock_skew"),
        (wrong_key, StatusCode::UNAUTHORIZED, "signature_invalid"),
        (unknown, StatusCode::UNAUTHORIZED, "signature_key_unknown"),
        (uncovered, StatusCode::BAD_REQUEST, "signature_component_missing"),
    ] {
        let (got, problem) = send(&world.router, signed.build()).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{problem}");
    }

    // The body changed after signing, digest left alone: the digest no longer matches.
    let signed = fresh(25);
    let headers = signed.headers(signed.body.as_deref());
    let altered = pay(25, "999").to_string();
    let (got, problem) = send(&world.router, signed.request(&headers, Some(&altered))).await;
    assert_eq!((got, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("content_digest_mismatch")));
    // The body and its digest changed after signing: the signature no longer verifies.
    let mut headers = signed.headers(signed.body.as_deref());
    headers.insert("content-digest", HeaderValue::from_str(&content_digest(altered.as_bytes())).unwrap());
    let (got, problem) = send(&world.router, signed.request(&headers, Some(&altered))).await;
    assert_eq!((got, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("signature_invalid")));
    // A body without any digest.
    let mut headers = signed.headers(signed.body.as_deref());
    headers.remove("content-digest");
    let (got, problem) = send(&world.router, signed.request(&headers, signed.body.as_deref())).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{problem}");
    // A path changed after signing.
    let mut moved = fresh(26);
    let headers = moved.headers(moved.body.as_deref());
    moved.path = "/v1/transfers/batch".into();
    let (got, problem) = send(&world.router, moved.request(&headers, moved.body.as_deref())).await;
    assert_eq!((got, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("signature_invalid")));
    // Nothing above moved money.
    let (_, balance) =
        send(&world.router, Signed::new("/v1/accounts/1/balance", None, &key(7), "meter-1").build()).await;
    assert_eq!(balance["debits_posted"], "0", "{balance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_and_revoked_or_rotated_keys_stop_at_once() {
    let world = World::new().await;
    let pay_signed = |id: u32, amount: &str| Signed::new("/v1/transfers", Some(pay(id, amount)), &key(7), "meter-1");
    let (status, problem) = send(&world.router, pay_signed(30, "501").build()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("device_limit_exceeded")));
    assert_eq!(send(&world.router, pay_signed(31, "500").build()).await.0, StatusCode::CREATED);
    assert_eq!(send(&world.router, pay_signed(32, "500").build()).await.0, StatusCode::CREATED);
    let (status, problem) = send(&world.router, pay_signed(33, "1").build()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("device_limit_exceeded")),
        "daily limit"
    );
    let mut other_asset = pay(34, "1");
    other_asset["asset_code"] = json!("EUR");
    let (status, _) =
        send(&world.router, Signed::new("/v1/transfers", Some(other_asset), &key(7), "meter-1").build()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A device cannot pay from someone else's account nor manage devices.
    world.op(Method::POST, "/v1/devices/50/limits", json!({"limits": null})).await;
    let mut theirs = pay(35, "1");
    theirs["debit_account_id"] = json!("2");
    theirs["credit_account_id"] = json!("1");
    let (status, _) = send(&world.router, Signed::new("/v1/transfers", Some(theirs), &key(7), "meter-1").build()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another's account is not there for the device");
    let register =
        Signed::new("/v1/principals/100/devices", Some(json!({"jwk": jwk(&key(9), "sneaky")})), &key(7), "meter-1");
    assert_eq!(send(&world.router, register.build()).await.0, StatusCode::FORBIDDEN);

    world.op(Method::POST, "/v1/devices/50/rotate", json!({"jwk": jwk(&key(11), "meter-1b")})).await;
    let (status, problem) = send(&world.router, pay_signed(36, "1").build()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("signature_key_unknown")));
    let rotated = Signed::new("/v1/transfers", Some(pay(37, "1")), &key(11), "meter-1b");
    assert_eq!(send(&world.router, rotated.build()).await.0, StatusCode::CREATED);

    world.op(Method::POST, "/v1/devices/50/status", json!({"status": "suspended"})).await;
    let (status, problem) =
        send(&world.router, Signed::new("/v1/transfers", Some(pay(38, "1")), &key(11), "meter-1b").build()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("device_inactive")));
    world.op(Method::POST, "/v1/devices/50/status", json!({"status": "revoked"})).await;
    let (status, problem) =
        send(&world.router, Signed::new("/v1/transfers", Some(pay(39, "1")), &key(11), "meter-1b").build()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("device_inactive")));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/devices/50/status")
        .header(header::AUTHORIZATION, format!("Bearer {}", world.operator))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"status": "active"}).to_string()))
        .unwrap();
    let (status, problem) = send(&world.router, request).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("already_revoked")));
}
