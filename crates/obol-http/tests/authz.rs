//! Goal: every route answers every role exactly as the authorization rules say, for the caller's
//! own resources and for someone else's; keys, scopes, suspension and rotation behave.
//! Method: the real router over a real engine; an operator creates a holder (A), another holder
//! (B), a merchant, an analyst and an auditor with keys through the API; the matrix then sends
//! each route's request as each of them and asserts the exact status. The matrix must name every
//! route in `obol_http::ROUTES`, and `ROUTES` must equal the OpenAPI document's operations, so a
//! new route cannot ship without a row.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use obol_http::ROUTES;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;

struct World {
    router: Router,
    operator: String,
    _scratch: support::Scratch,
}

async fn call(
    router: &Router,
    key: Option<&str>,
    method: &Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let credential = key.map_or(Credential::Nobody, |key| Credential::Key(key.to_string()));
    call_as(router, &credential, method, path, body).await
}

impl World {
    fn new() -> World {
        let started = support::start("authz");
        World { router: started.router, operator: started.operator, _scratch: started.scratch }
    }

    async fn op(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = call(&self.router, Some(&self.operator), &method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Creates a principal and returns a key for it (all scopes unless given).
    async fn principal(&self, id: u128, role: &str, scopes: Option<&[&str]>) -> String {
        self.op(
            Method::POST,
            "/v1/principals",
            Some(json!({"id": id.to_string(), "role": role, "name": format!("{role} {id}")})),
        )
        .await;
        let body = match scopes {
            Some(scopes) => json!({"scopes": scopes}),
            None => json!({}),
        };
        let key = self.op(Method::POST, &format!("/v1/principals/{id}/keys"), Some(body)).await;
        key["key"].as_str().unwrap().to_string()
    }
}

/// A fresh Ed25519 public JWK with the given kid.
fn jwk(kid: &str) -> Value {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let mut seed = [0u8; 32];
    for (i, byte) in kid.bytes().enumerate() {
        seed[i % 32] ^= byte.wrapping_add(i as u8);
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": Base64UrlUnpadded::encode_string(&key.verifying_key().to_bytes())})
}

const A: u128 = 100;
const B: u128 = 200;
const M: u128 = 300;

struct Row {
    method: Method,
    /// The route template this row covers.
    route: &'static str,
    /// Path and body for caller number `i` (0 operator, 1 holder A, 2 holder B, 3 merchant,
    /// 4 analyst, 5 auditor); fresh ids per caller where the request creates something.
    request: Box<dyn Fn(usize) -> (String, Option<Value>)>,
    /// Expected status per caller, same order.
    expect: [u16; 6],
    /// Where callers signed in to a dashboard session get another answer (the session routes).
    expect_in_session: Option<[u16; 6]>,
}

fn row(
    method: Method,
    route: &'static str,
    request: impl Fn(usize) -> (String, Option<Value>) + 'static,
    expect: [u16; 6],
) -> Row {
    Row { method, route, request: Box::new(request), expect, expect_in_session: None }
}

impl Row {
    /// Expects `statuses` instead when the callers come through dashboard sessions.
    fn in_session(mut self, statuses: [u16; 6]) -> Row {
        self.expect_in_session = Some(statuses);
        self
    }
}

/// A caller's credential: an API key, or a dashboard session opened with it (the cookie's token
/// and the CSRF token sent with every request that changes something).
enum Credential {
    Key(String),
    Session { token: String, csrf: String },
    Nobody,
}

async fn call_as(
    router: &Router,
    credential: &Credential,
    method: &Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (key, session) = match credential {
        Credential::Key(key) => (Some(key.as_str()), None),
        Credential::Session { token, csrf } => (None, Some((token, csrf))),
        Credential::Nobody => (None, None),
    };
    let mut builder = Request::builder().method(method.clone()).uri(path);
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    if let Some((token, csrf)) = session {
        builder = builder
            .header(header::COOKIE, format!("__Host-obol_session={token}"))
            .header("x-csrf-token", csrf.as_str())
            .header("sec-fetch-site", "same-origin");
    }
    let request = match body {
        Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Signs in with `key`: its session.
async fn session_of(router: &Router, key: &str) -> Credential {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"api_key": key}).to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers().get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let session: Value = serde_json::from_slice(&bytes).unwrap();
    let token = cookie.strip_prefix("__Host-obol_session=").unwrap().split(';').next().unwrap().to_string();
    Credential::Session { token, csrf: session["csrf_token"].as_str().unwrap().to_string() }
}

fn usd(id: String, from: &str, to: &str) -> Value {
    json!({"id": id, "debit_account_id": from, "credit_account_id": to, "amount": "1", "asset_code": "USD", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_rules_say() {
    every_route_answers_as_the_rules_say(false).await;
}

/// The same matrix with every caller signed in to a dashboard session instead of sending its
/// key: a session may do exactly what its key may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_the_same_through_a_dashboard_session() {
    every_route_answers_as_the_rules_say(true).await;
}

async fn every_route_answers_as_the_rules_say(through_sessions: bool) {
    let world = World::new();
    let holder_a = world.principal(A, "holder", None).await;
    let holder_b = world.principal(B, "holder", None).await;
    let merchant = world.principal(M, "merchant", None).await;
    let analyst = world.principal(400, "analyst", None).await;
    let auditor = world.principal(500, "auditor", None).await;
    world.principal(600, "holder", None).await;
    world.principal(650, "holder", None).await;
    // A's spare keys, one per caller, for the revoke and rotate rows.
    let mut spare_keys = Vec::new();
    for _ in 0..12 {
        let key = world.op(Method::POST, &format!("/v1/principals/{A}/keys"), Some(json!({}))).await;
        spare_keys.push(key["key_id"].as_str().unwrap().to_string());
    }
    world.op(Method::POST, "/v1/accounts", Some(json!({"id": "9001", "asset_code": "USD", "asset_scale": 2}))).await;
    for (id, owner) in [("1001", A), ("2001", B), ("3001", M)] {
        let body = json!({"id": id, "asset_code": "USD", "asset_scale": 2, "owner_id": owner.to_string()});
        world.op(Method::POST, "/v1/accounts", Some(body)).await;
    }
    let mut fund = usd("1".into(), "9001", "1001");
    fund["amount"] = json!("1000000");
    world.op(Method::POST, "/v1/transfers", Some(fund)).await;
    world.op(Method::POST, "/v1/transfers", Some(usd("2".into(), "1001", "3001"))).await;
    let mut refundable = usd("3".into(), "1001", "3001");
    refundable["amount"] = json!("100");
    world.op(Method::POST, "/v1/transfers", Some(refundable)).await;

    for payment in ["4", "5", "6", "7"] {
        let mut disputed = usd(payment.into(), "1001", "3001");
        disputed["amount"] = json!("100");
        world.op(Method::POST, "/v1/transfers", Some(disputed)).await;
    }
    // Disputes of payments 4 to 7 (at most 8 a payment), opened by the operator for A: one to
    // read, and one per caller for each step.
    let groups = [("4", 8000..8001), ("5", 8100..8106), ("6", 8200..8206), ("7", 8300..8306)];
    for (payment, ids) in groups {
        for id in ids {
            let body = json!({"id": id.to_string(), "payment": payment, "amount": "1", "reason": "not_received"});
            world.op(Method::POST, "/v1/disputes", Some(body)).await;
        }
    }
    world
        .op(Method::POST, &format!("/v1/principals/{A}/devices"), Some(json!({"id": "800", "jwk": jwk("a-phone")})))
        .await;
    world
        .op(
            Method::POST,
            "/v1/tabs",
            Some(json!({"id": "7000", "payer_account_id": "1001", "payee_account_id": "3001",
            "budget": "100", "asset_code": "USD", "asset_scale": 2, "timeout_s": 600, "device_id": "800"})),
        )
        .await;
    // A's webhook endpoints: one per caller for the delete row, one for the replay row.
    let mut hooks = Vec::new();
    for _ in 0..7 {
        let (status, hook) = call(
            &world.router,
            Some(&holder_a),
            &Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://hooks.example/obol"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        hooks.push(hook["id"].as_str().unwrap().to_string());
    }
    let replay_hook = hooks.pop().unwrap();
    let deliveries_hook = replay_hook.clone();
    let keys = [world.operator.clone(), holder_a, holder_b, merchant, analyst, auditor];
    let mut credentials = Vec::new();
    for key in &keys {
        credentials.push(if through_sessions {
            session_of(&world.router, key).await
        } else {
            Credential::Key(key.clone())
        });
    }
    let sign_in_keys = keys.clone();
    let revoke_keys = spare_keys[..6].to_vec();
    let rotate_keys = spare_keys[6..].to_vec();
    let rows = vec![
        // Lists: each caller sees what it may (checked by `lists_show_each_caller_only_its_own`);
        // naming another owner is refused to holders and merchants.
        row(Method::GET, "/v1/accounts", |_| (format!("/v1/accounts?owner={A}"), None), [200, 200, 403, 403, 200, 200]),
        row(
            Method::GET,
            "/v1/transfers",
            |_| ("/v1/transfers?account=1001".into(), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(Method::GET, "/v1/tabs", |_| ("/v1/tabs?status=open".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::GET,
            "/v1/principals",
            |_| ("/v1/principals?role=holder".into(), None),
            [200, 403, 403, 403, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/accounts",
            |i| {
                (
                    "/v1/accounts".into(),
                    Some(json!({"id": (50_000 + i).to_string(), "asset_code": "USD", "asset_scale": 2})),
                )
            },
            [201, 201, 201, 201, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/accounts",
            |i| {
                (
                    "/v1/accounts".into(),
                    Some(
                        json!({"id": (51_000 + i).to_string(), "asset_code": "USD", "asset_scale": 2, "owner_id": A.to_string()}),
                    ),
                )
            },
            [201, 201, 403, 403, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/accounts/batch",
            |i| {
                (
                    "/v1/accounts/batch".into(),
                    Some(
                        json!({"accounts": [{"id": (52_000 + i).to_string(), "asset_code": "USD", "asset_scale": 2}]}),
                    ),
                )
            },
            [200, 200, 200, 200, 403, 403],
        ),
        row(Method::GET, "/v1/accounts/{id}", |_| ("/v1/accounts/1001".into(), None), [200, 200, 404, 404, 200, 200]),
        row(Method::GET, "/v1/accounts/{id}", |_| ("/v1/accounts/3001".into(), None), [200, 404, 404, 200, 200, 200]),
        row(
            Method::GET,
            "/v1/accounts/{id}/balance",
            |_| ("/v1/accounts/1001/balance".into(), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::GET,
            "/v1/accounts/{id}/history",
            |_| ("/v1/accounts/1001/history".into(), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/transfers",
            |i| ("/v1/transfers".into(), Some(usd((60_000 + i).to_string(), "1001", "3001"))),
            [201, 201, 404, 404, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/transfers/batch",
            |i| {
                (
                    "/v1/transfers/batch".into(),
                    Some(json!({"transfers": [usd((61_000 + i).to_string(), "1001", "3001")]})),
                )
            },
            [200, 200, 404, 404, 403, 403],
        ),
        row(Method::GET, "/v1/transfers/{id}", |_| ("/v1/transfers/2".into(), None), [200, 200, 404, 200, 200, 200]),
        row(Method::GET, "/v1/me", |_| ("/v1/me".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/v1/principals",
            |i| {
                (
                    "/v1/principals".into(),
                    Some(json!({"id": (70_000 + i).to_string(), "role": "holder", "name": "new"})),
                )
            },
            [201, 403, 403, 403, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}",
            |_| (format!("/v1/principals/{A}"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/status",
            |_| ("/v1/principals/600/status".into(), Some(json!({"status": "active"}))),
            [200, 403, 403, 403, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/keys",
            |_| (format!("/v1/principals/{A}/keys"), None),
            [200, 200, 404, 404, 404, 200],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/keys",
            |_| (format!("/v1/principals/{A}/keys"), Some(json!({"scopes": ["read"]}))),
            [201, 201, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/activity",
            |_| (format!("/v1/principals/{A}/activity"), None),
            [200, 200, 404, 404, 404, 200],
        ),
        // Alerts and webhooks: a holder's own (or the operator's); the feed shows each caller
        // its own events.
        row(
            Method::GET,
            "/v1/principals/{id}/alerts",
            |_| (format!("/v1/principals/{A}/alerts"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::PUT,
            "/v1/principals/{id}/alerts",
            |_| {
                let body = json!({"payment_over": {"asset_code": "USD", "asset_scale": 2, "amount": "100000"}});
                (format!("/v1/principals/{A}/alerts"), Some(body))
            },
            [200, 200, 404, 404, 403, 403],
        ),
        row(Method::GET, "/v1/webhooks", |_| ("/v1/webhooks".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/v1/webhooks",
            |_| ("/v1/webhooks".into(), Some(json!({"url": "https://hooks.example/mine"}))),
            [201, 201, 201, 201, 403, 403],
        ),
        row(
            Method::DELETE,
            "/v1/webhooks/{id}",
            move |i| (format!("/v1/webhooks/{}", hooks[i]), None),
            [204, 204, 404, 404, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/webhooks/{id}/replay",
            move |_| (format!("/v1/webhooks/{replay_hook}/replay"), Some(json!({}))),
            [200, 200, 404, 404, 403, 403],
        ),
        // A's endpoint: its owner and staff see its deliveries.
        row(
            Method::GET,
            "/v1/webhooks/{id}/deliveries",
            move |_| (format!("/v1/webhooks/{deliveries_hook}/deliveries"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(Method::GET, "/v1/events", |_| ("/v1/events".into(), None), [200, 200, 200, 200, 200, 200]),
        // Freeze: the holder (or the operator) stops its payments; lifting it needs the
        // holder's second factor (A has none: refused) or the operator.
        row(
            Method::GET,
            "/v1/principals/{id}/freeze",
            |_| (format!("/v1/principals/{A}/freeze"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/freeze",
            |_| (format!("/v1/principals/{A}/freeze"), Some(json!({"tab": "7000"}))),
            [200, 200, 404, 404, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/unfreeze",
            |_| (format!("/v1/principals/{A}/unfreeze"), Some(json!({"tab": "7000"}))),
            [200, 403, 404, 404, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/security-checklist",
            |_| (format!("/v1/principals/{A}/security-checklist"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::DELETE,
            "/v1/keys/{key_id}",
            move |i| (format!("/v1/keys/{}", revoke_keys[i]), None),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/keys/{key_id}/rotate",
            move |i| (format!("/v1/keys/{}/rotate", rotate_keys[i]), Some(json!({"overlap_s": 60}))),
            [201, 201, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/devices",
            |i| {
                (
                    format!("/v1/principals/{A}/devices"),
                    Some(json!({"id": (900 + i).to_string(), "jwk": jwk(&format!("dev-{i}"))})),
                )
            },
            [201, 201, 404, 404, 404, 404],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/devices",
            |_| (format!("/v1/principals/{A}/devices"), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/devices/{id}/status",
            |_| ("/v1/devices/800/status".into(), Some(json!({"status": "active"}))),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/devices/{id}/rotate",
            |i| ("/v1/devices/800/rotate".into(), Some(json!({"jwk": jwk(&format!("rotated-{i}"))}))),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/devices/{id}/limits",
            |_| ("/v1/devices/800/limits".into(), Some(json!({"limits": null}))),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/totp",
            |_| (format!("/v1/principals/{A}/totp"), Some(json!({}))),
            [404, 201, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/totp/confirm",
            |_| (format!("/v1/principals/{A}/totp/confirm"), Some(json!({"code": "000000"}))),
            [404, 403, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/unlock",
            |_| (format!("/v1/principals/{A}/unlock"), Some(json!({}))),
            [200, 403, 403, 403, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/step-up",
            |_| (format!("/v1/principals/{A}/step-up"), Some(json!({}))),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/challenges/{id}/approve",
            |_| ("/v1/challenges/0123/approve".into(), Some(json!({"code": "000000"}))),
            [404, 404, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/passkeys",
            |_| (format!("/v1/principals/{A}/passkeys"), Some(json!({}))),
            [404, 200, 404, 404, 404, 404],
        ),
        // The person or the operator; removing one that is not there is 404 for them too.
        row(
            Method::GET,
            "/v1/principals/{id}/passkeys",
            |_| (format!("/v1/principals/{A}/passkeys"), None),
            [200, 200, 404, 404, 404, 404],
        ),
        row(
            Method::DELETE,
            "/v1/principals/{id}/passkeys/{credential_id}",
            |_| (format!("/v1/principals/{A}/passkeys/AAAAAAAAAAAAAAAAAAAAAA"), None),
            [404, 404, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/passkeys/finish",
            |_| (format!("/v1/principals/{A}/passkeys/finish"), Some(json!({"ceremony_id": "nope", "credential": {}}))),
            [404, 400, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/challenges/{id}/passkey",
            |_| ("/v1/challenges/0123/passkey".into(), Some(json!({}))),
            [404, 404, 404, 404, 404, 404],
        ),
        row(
            Method::POST,
            "/v1/tabs",
            |i| {
                (
                    "/v1/tabs".into(),
                    Some(
                        json!({"id": (61_000 + i).to_string(), "payer_account_id": "1001", "payee_account_id": "3001", "budget": "1", "asset_code": "USD", "asset_scale": 2, "timeout_s": 60, "device_id": "800"}),
                    ),
                )
            },
            [201, 201, 404, 403, 403, 403],
        ),
        row(Method::GET, "/v1/tabs/{id}", |_| ("/v1/tabs/7000".into(), None), [200, 200, 404, 200, 200, 200]),
        row(
            Method::POST,
            "/v1/tabs/{id}/vouchers",
            |_| ("/v1/tabs/7000/vouchers".into(), Some(json!({"voucher": "AAAA"}))),
            [400, 403, 404, 400, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/tabs/{id}/commitment",
            |_| ("/v1/tabs/7000/commitment".into(), Some(json!({"commitment": "AAAA"}))),
            [400, 400, 404, 400, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/tabs/{id}/ticks",
            |_| ("/v1/tabs/7000/ticks".into(), Some(json!({"index": 1, "word": "00"}))),
            [400, 403, 404, 400, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/tabs/{id}/topup",
            |_| ("/v1/tabs/7000/topup".into(), Some(json!({"amount": "0"}))),
            [400, 400, 404, 403, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/vouchers",
            |_| ("/v1/vouchers".into(), Some(json!({"vouchers": []}))),
            [200, 200, 200, 200, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/tabs/{id}/settle",
            |_| ("/v1/tabs/7000/settle".into(), Some(json!({}))),
            [200, 200, 404, 200, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/x402/verify",
            |_| ("/v1/x402/verify".into(), Some(x402_request())),
            [200, 403, 403, 200, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/x402/settle",
            |_| ("/v1/x402/settle".into(), Some(x402_request())),
            [200, 403, 403, 200, 403, 403],
        ),
        row(Method::GET, "/v1/devices", |_| ("/v1/devices".into(), None), [200, 200, 200, 403, 200, 200]),
        row(Method::GET, "/v1/assets", |_| ("/v1/assets".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::POST,
            "/v1/assets",
            |_| ("/v1/assets".into(), Some(json!({"code": "GEM", "scale": 0, "description": "Gems"}))),
            [201, 403, 403, 403, 403, 403],
        ),
        row(Method::GET, "/v1/x402/supported", |_| ("/v1/x402/supported".into(), None), [200, 200, 200, 200, 200, 200]),
        // Everyone may ask; each sees only the routes paying its own accounts (tests/x402.rs).
        row(Method::GET, "/v1/x402/routes", |_| ("/v1/x402/routes".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::GET,
            "/v1/accounts/{id}/monthly-limit",
            |_| ("/v1/accounts/1001/monthly-limit".into(), None),
            [200, 200, 404, 404, 200, 200],
        ),
        row(
            Method::POST,
            "/v1/accounts/{id}/monthly-limit",
            |_| ("/v1/accounts/1001/monthly-limit".into(), Some(json!({"limit": null}))),
            [200, 200, 404, 404, 403, 403],
        ),
        // Holders and merchants list only their own held payments (tests/holds.rs checks whose).
        row(Method::GET, "/v1/risk/reviews", |_| ("/v1/risk/reviews".into(), None), [200, 200, 200, 200, 200, 403]),
        row(
            Method::GET,
            "/v1/risk/reviews/{id}",
            |_| ("/v1/risk/reviews/nope".into(), None),
            [404, 404, 404, 404, 404, 403],
        ),
        row(
            Method::POST,
            "/v1/risk/reviews/{id}/decision",
            |_| ("/v1/risk/reviews/nope/decision".into(), Some(json!({"decision": "approve"}))),
            [404, 403, 403, 403, 404, 403],
        ),
        row(Method::GET, "/v1/risk/labels", |_| ("/v1/risk/labels".into(), None), [200, 403, 403, 403, 200, 403]),
        row(
            Method::POST,
            "/v1/risk/labels",
            |_| ("/v1/risk/labels".into(), Some(json!({"labels": [{"payment_id": "999999"}]}))),
            [404, 403, 403, 403, 404, 403],
        ),
        row(
            Method::GET,
            "/v1/risk/labels/recorded",
            |_| ("/v1/risk/labels/recorded".into(), None),
            [200, 403, 403, 403, 200, 403],
        ),
        row(Method::GET, "/v1/risk/decisions", |_| ("/v1/risk/decisions".into(), None), [200, 403, 403, 403, 200, 403]),
        row(Method::GET, "/v1/risk/policy", |_| ("/v1/risk/policy".into(), None), [200, 403, 403, 403, 200, 403]),
        row(
            Method::POST,
            "/v1/risk/policy",
            |_| ("/v1/risk/policy".into(), Some(json!("not a bundle"))),
            [422, 403, 403, 403, 422, 403],
        ),
        row(
            Method::GET,
            "/v1/risk/policy/changes",
            |_| ("/v1/risk/policy/changes".into(), None),
            [200, 403, 403, 403, 200, 200],
        ),
        // No model is loaded here: staff learn that; others may not ask.
        row(Method::GET, "/v1/risk/model", |_| ("/v1/risk/model".into(), None), [404, 403, 403, 403, 404, 403]),
        row(Method::GET, "/v1/risk/shadow", |_| ("/v1/risk/shadow".into(), None), [404, 403, 403, 403, 404, 403]),
        row(Method::DELETE, "/v1/risk/shadow", |_| ("/v1/risk/shadow".into(), None), [404, 403, 403, 403, 404, 403]),
        // Checkpoints, the key and consistency proofs are hashes only: every signed-in caller may
        // hold the server to its history. Entries and what proves them: operator and auditors.
        row(
            Method::GET,
            "/v1/audit/checkpoint",
            |_| ("/v1/audit/checkpoint".into(), None),
            [200, 200, 200, 200, 200, 200],
        ),
        row(Method::GET, "/v1/audit/key", |_| ("/v1/audit/key".into(), None), [200, 200, 200, 200, 200, 200]),
        row(
            Method::GET,
            "/v1/audit/entries/{index}",
            |_| ("/v1/audit/entries/0".into(), None),
            [200, 403, 403, 403, 403, 200],
        ),
        row(
            Method::GET,
            "/v1/audit/entries/{index}/proof",
            |_| ("/v1/audit/entries/0/proof?size=2".into(), None),
            [200, 403, 403, 403, 403, 200],
        ),
        row(
            Method::GET,
            "/v1/audit/consistency",
            |_| ("/v1/audit/consistency?from=1&to=2".into(), None),
            [200, 200, 200, 200, 200, 200],
        ),
        row(
            Method::GET,
            "/v1/audit/export",
            |_| ("/v1/audit/export?from=0&to=2".into(), None),
            [200, 403, 403, 403, 403, 200],
        ),
        // Refunds: the payee (or the operator) gives back; the payer may not refund to itself.
        row(
            Method::POST,
            "/v1/transfers/{id}/refunds",
            |i| ("/v1/transfers/3/refunds".into(), Some(json!({"id": (66_000 + i).to_string(), "amount": "1"}))),
            [201, 403, 404, 201, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/refunds",
            |i| {
                (
                    "/v1/refunds".into(),
                    Some(json!({"refunds": [{"payment": "3", "id": (67_000 + i).to_string(), "amount": "1"}]})),
                )
            },
            [200, 403, 404, 200, 403, 403],
        ),
        // Disputes: the payer opens and withdraws, the payee answers, staff who are not a
        // party decide; each party sees its own.
        row(
            Method::POST,
            "/v1/disputes",
            |i| {
                let body =
                    json!({"id": (68_000 + i).to_string(), "payment": "4", "amount": "1", "reason": "duplicate"});
                ("/v1/disputes".into(), Some(body))
            },
            [201, 201, 404, 403, 403, 403],
        ),
        row(Method::GET, "/v1/disputes", |_| ("/v1/disputes?status=open".into(), None), [200, 200, 200, 200, 200, 200]),
        row(Method::GET, "/v1/disputes/{id}", |_| ("/v1/disputes/8000".into(), None), [200, 200, 404, 200, 200, 200]),
        row(
            Method::POST,
            "/v1/disputes/{id}/answer",
            |i| (format!("/v1/disputes/{}/answer", 8100 + i), Some(json!({"statement": "delivered"}))),
            [200, 403, 404, 200, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/disputes/{id}/resolve",
            |i| (format!("/v1/disputes/{}/resolve", 8200 + i), Some(json!({"winner": "payee"}))),
            [200, 403, 403, 403, 200, 403],
        ),
        row(
            Method::POST,
            "/v1/disputes/{id}/withdraw",
            |i| (format!("/v1/disputes/{}/withdraw", 8300 + i), None),
            [200, 200, 404, 403, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/accounts/{id}/statement",
            |_| ("/v1/accounts/1001/statement".into(), None),
            [200, 200, 404, 404, 200, 200],
        ),
        // Personal fields: the person, or an operator who states a purpose (logged). Records
        // about the data (who read it, consents): the person, operators and auditors. Only the
        // person gives consent; the person or an operator asks for erasure.
        row(
            Method::GET,
            "/v1/principals/{id}/profile",
            |_| (format!("/v1/principals/{A}/profile?purpose=support"), None),
            [200, 200, 404, 404, 403, 403],
        ),
        row(
            Method::PATCH,
            "/v1/principals/{id}/profile",
            |_| (format!("/v1/principals/{A}/profile"), Some(json!({"notes": "prefers email"}))),
            [204, 204, 404, 404, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/access-log",
            |_| (format!("/v1/principals/{A}/access-log"), None),
            [200, 200, 404, 404, 403, 200],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/consents",
            |_| (format!("/v1/principals/{A}/consents"), None),
            [200, 200, 404, 404, 403, 200],
        ),
        row(
            Method::PUT,
            "/v1/principals/{id}/consents/{purpose}",
            |_| (format!("/v1/principals/{A}/consents/marketing"), Some(json!({"granted": true}))),
            [403, 200, 404, 404, 403, 403],
        ),
        row(
            Method::POST,
            "/v1/principals/{id}/erasure",
            |_| ("/v1/principals/650/erasure".into(), None),
            [202, 404, 404, 404, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/principals/{id}/export",
            |_| (format!("/v1/principals/{A}/export"), None),
            [200, 200, 404, 404, 403, 403],
        ),
        row(
            Method::GET,
            "/v1/privacy/retention",
            |_| ("/v1/privacy/retention".into(), None),
            [200, 403, 403, 403, 403, 200],
        ),
        row(Method::GET, "/v1/openapi.json", |_| ("/v1/openapi.json".into(), None), [200, 200, 200, 200, 200, 200]),
        row(Method::GET, "/healthz", |_| ("/healthz".into(), None), [200, 200, 200, 200, 200, 200]),
        row(Method::GET, "/readyz", |_| ("/readyz".into(), None), [200, 200, 200, 200, 200, 200]),
        row(Method::GET, "/metrics", |_| ("/metrics".into(), None), [200, 200, 200, 200, 200, 200]),
        // Dashboard sessions: anyone signs in with its own key; only a session can be shown or
        // ended; the operator alone may sign another principal out everywhere.
        row(
            Method::POST,
            "/v1/sessions",
            move |i| ("/v1/sessions".into(), Some(json!({"api_key": sign_in_keys[i]}))),
            [201, 201, 201, 201, 201, 201],
        ),
        // Public: any principal id gets a challenge (a decoy for one without passkeys).
        row(
            Method::POST,
            "/v1/sessions/passkey",
            |_| ("/v1/sessions/passkey".into(), Some(json!({"principal_id": "1001"}))),
            [200, 200, 200, 200, 200, 200],
        ),
        row(Method::GET, "/v1/session", |_| ("/v1/session".into(), None), [404, 404, 404, 404, 404, 404])
            .in_session([200, 200, 200, 200, 200, 200]),
        row(
            Method::DELETE,
            "/v1/principals/{id}/sessions",
            |_| ("/v1/principals/600/sessions".into(), None),
            [200, 404, 404, 404, 404, 404],
        ),
        // Last: through a session it signs the caller out.
        row(Method::DELETE, "/v1/session", |_| ("/v1/session".into(), None), [404, 404, 404, 404, 404, 404])
            .in_session([204, 204, 204, 204, 204, 204]),
    ];
    let covered: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
    for (method, path) in ROUTES {
        assert!(
            covered.contains(&(method.to_string(), path.to_string())),
            "route {method} {path} has no row in the matrix"
        );
    }
    let callers = ["operator", "holder A", "holder B", "merchant", "analyst", "auditor"];
    let mut failures = Vec::new();
    for row in &rows {
        let expect = if through_sessions { row.expect_in_session.unwrap_or(row.expect) } else { row.expect };
        for (index, credential) in credentials.iter().enumerate() {
            let (path, body) = (row.request)(index);
            let (status, answer) = call_as(&world.router, credential, &row.method, &path, body).await;
            if status.as_u16() != expect[index] {
                failures.push(format!(
                    "{} {path} as {}: {} (expected {}) {answer}",
                    row.method,
                    callers[index],
                    status.as_u16(),
                    expect[index]
                ));
            }
        }
        // Every /v1 route needs a key, except the facilitator's public list of what it accepts.
        let open = obol_http::PUBLIC_V1_ROUTES.contains(&row.route);
        if row.route.starts_with("/v1/") {
            let (path, body) = (row.request)(0);
            let (status, _) = call(&world.router, None, &row.method, &path, body).await;
            if open {
                assert!(status.is_success(), "{} {path} without a key: {status}", row.method);
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path} without a key", row.method);
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_the_openapi_document_exactly() {
    let world = World::new();
    let document = world.op(Method::GET, "/v1/openapi.json", None).await;
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, listed, "ROUTES and the OpenAPI document disagree");
    for (method, path) in ROUTES {
        let concrete = path.replace("{id}", "1").replace("{key_id}", "0000000000000000");
        let (status, answer) =
            call(&world.router, Some(&world.operator), &method.parse().unwrap(), &concrete, None).await;
        assert!(
            status != StatusCode::NOT_FOUND || answer["code"] != "route_not_found",
            "{method} {path} is listed but not routed"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is listed but not routed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_suspension_revocation_and_rotation_take_effect_at_once() {
    let world = World::new();
    let read_only = world.principal(A, "holder", Some(&["read"])).await;
    world
        .op(
            Method::POST,
            "/v1/accounts",
            Some(json!({"id": "1", "asset_code": "USD", "asset_scale": 2, "owner_id": A.to_string()})),
        )
        .await;
    let (status, problem) = call(
        &world.router,
        Some(&read_only),
        &Method::POST,
        "/v1/accounts",
        Some(json!({"id": "2", "asset_code": "USD", "asset_scale": 2})),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert!(problem["detail"].as_str().unwrap().contains("pay"));
    assert_eq!(call(&world.router, Some(&read_only), &Method::GET, "/v1/accounts/1", None).await.0, StatusCode::OK);
    // A key cannot mint a key with more scopes than it has (and this one lacks manage anyway).
    let (status, _) =
        call(&world.router, Some(&read_only), &Method::POST, &format!("/v1/principals/{A}/keys"), Some(json!({})))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    world.op(Method::POST, &format!("/v1/principals/{A}/status"), Some(json!({"status": "suspended"}))).await;
    let (status, problem) = call(&world.router, Some(&read_only), &Method::GET, "/v1/accounts/1", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("principal_suspended")));
    world.op(Method::POST, &format!("/v1/principals/{A}/status"), Some(json!({"status": "active"}))).await;
    assert_eq!(call(&world.router, Some(&read_only), &Method::GET, "/v1/accounts/1", None).await.0, StatusCode::OK);

    let full = world.op(Method::POST, &format!("/v1/principals/{A}/keys"), Some(json!({}))).await;
    let full_key = full["key"].as_str().unwrap().to_string();
    let full_id = full["key_id"].as_str().unwrap().to_string();
    let rotated = world.op(Method::POST, &format!("/v1/keys/{full_id}/rotate"), Some(json!({"overlap_s": 3600}))).await;
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(
        call(&world.router, Some(&full_key), &Method::GET, "/v1/me", None).await.0,
        StatusCode::OK,
        "old key works during the overlap"
    );
    assert_eq!(call(&world.router, Some(&new_key), &Method::GET, "/v1/me", None).await.0, StatusCode::OK);
    let new_id = rotated["key_id"].as_str().unwrap().to_string();
    let rotated_again =
        world.op(Method::POST, &format!("/v1/keys/{new_id}/rotate"), Some(json!({"overlap_s": 0}))).await;
    assert_eq!(
        call(&world.router, Some(&new_key), &Method::GET, "/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED,
        "overlap 0 revokes at once"
    );
    let newest = rotated_again["key"].as_str().unwrap().to_string();
    world.op(Method::DELETE, &format!("/v1/keys/{}", rotated_again["key_id"].as_str().unwrap()), None).await;
    assert_eq!(
        call(&world.router, Some(&newest), &Method::GET, "/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED,
        "revoked at once, cache or not"
    );

    let expiring = world.op(Method::POST, &format!("/v1/principals/{A}/keys"), Some(json!({"expires_in_s": 1}))).await;
    let expiring_key = expiring["key"].as_str().unwrap().to_string();
    assert_eq!(call(&world.router, Some(&expiring_key), &Method::GET, "/v1/me", None).await.0, StatusCode::OK);
    let expires_ns: u64 = expiring["expires_ns"].as_str().unwrap().parse().unwrap();
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 <= expires_ns {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(&world.router, Some(&expiring_key), &Method::GET, "/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let activity = world.op(Method::GET, &format!("/v1/principals/{A}/activity"), None).await;
    let events: Vec<&str> = activity.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    for expected in
        ["principal_created", "api_key_created", "principal_status_changed", "api_key_expiry_set", "api_key_revoked"]
    {
        assert!(events.contains(&expected), "{expected} missing from {events:?}");
    }
    let listed = world.op(Method::GET, &format!("/v1/principals/{A}/keys"), None).await;
    let listed_text = listed.to_string();
    for secret in [&read_only, &full_key, &new_key, &newest] {
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(!listed_text.contains(secret_part), "a key listing must never show a secret");
    }
}

/// A facilitator request for a payment into the merchant's account 3001 (its voucher is not
/// valid: the answer says so, once the caller may ask).
fn x402_request() -> serde_json::Value {
    let requirements = json!({"scheme": "obol-voucher", "network": "obol:local", "amount": "1", "asset": "USD",
        "payTo": "3001", "maxTimeoutSeconds": 60, "extra": {"assetScale": 2}});
    json!({"x402Version": 2, "paymentRequirements": requirements,
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": {"voucher": "AAAA"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_show_each_caller_only_its_own() {
    let world = World::new();
    let holder_a = world.principal(A, "holder", None).await;
    let holder_b = world.principal(B, "holder", None).await;
    let merchant = world.principal(M, "merchant", None).await;
    world.op(Method::POST, "/v1/accounts", Some(json!({"id": "9001", "asset_code": "USD", "asset_scale": 2}))).await;
    for (id, owner, asset) in [("1001", A, "USD"), ("1002", A, "EUR"), ("2001", B, "USD"), ("3001", M, "USD")] {
        let body = json!({"id": id, "asset_code": asset, "asset_scale": 2, "owner_id": owner.to_string()});
        world.op(Method::POST, "/v1/accounts", Some(body)).await;
    }
    let mut fund = usd("1".into(), "9001", "1001");
    fund["amount"] = json!("1000");
    world.op(Method::POST, "/v1/transfers", Some(fund)).await;
    world.op(Method::POST, "/v1/transfers", Some(usd("2".into(), "1001", "3001"))).await;
    let mut fund_b = usd("3".into(), "9001", "2001");
    fund_b["amount"] = json!("500");
    world.op(Method::POST, "/v1/transfers", Some(fund_b)).await;
    let ids = |page: &Value, field: &str| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.pointer(field).unwrap().as_str().unwrap().to_string())
            .collect()
    };
    let get = |key: String, path: &'static str| {
        let router = world.router.clone();
        async move { call(&router, Some(&key), &Method::GET, path, None).await }
    };
    let (status, page) = get(world.operator.clone(), "/v1/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page, "/id"), ["9001", "1001", "1002", "2001", "3001"]);
    let (_, page) = get(world.operator.clone(), "/v1/accounts?asset=USD/2&limit=2").await;
    assert_eq!(ids(&page, "/id"), ["9001", "1001"]);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page) = call(
        &world.router,
        Some(&world.operator),
        &Method::GET,
        &format!("/v1/accounts?asset=USD/2&limit=2&after={next}"),
        None,
    )
    .await;
    assert_eq!(ids(&page, "/id"), ["2001", "3001"]);
    assert!(page.get("next").is_none(), "the last page has no cursor: {page}");
    // Devices: A's two and B's one; a holder sees its own, the operator pages through all.
    for (holder, id, kid) in [(A, "801", "a-1"), (B, "802", "b-1"), (A, "803", "a-2")] {
        let body = json!({"id": id, "jwk": jwk(kid)});
        world.op(Method::POST, &format!("/v1/principals/{holder}/devices"), Some(body)).await;
    }
    let (_, page) = get(world.operator.clone(), "/v1/devices?limit=2").await;
    assert_eq!(ids(&page, "/id"), ["801", "802"]);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page) =
        call(&world.router, Some(&world.operator), &Method::GET, &format!("/v1/devices?limit=2&after={next}"), None)
            .await;
    assert_eq!(ids(&page, "/id"), ["803"]);
    assert!(page.get("next").is_none(), "{page}");
    let (_, page) = get(holder_a.clone(), "/v1/devices").await;
    assert_eq!(ids(&page, "/id"), ["801", "803"]);
    let (_, page) = get(holder_b.clone(), "/v1/devices").await;
    assert_eq!(ids(&page, "/id"), ["802"]);
    let (status, _) = get(holder_b.clone(), "/v1/devices?holder=100").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another holder's devices");
    let (_, page) = get(world.operator.clone(), "/v1/devices?holder=100&status=active").await;
    assert_eq!(ids(&page, "/id"), ["801", "803"]);

    let (_, page) = get(holder_a.clone(), "/v1/accounts").await;
    assert_eq!(ids(&page, "/id"), ["1001", "1002"], "a holder lists its own accounts only");
    let (_, page) = get(holder_b.clone(), "/v1/accounts").await;
    assert_eq!(ids(&page, "/id"), ["2001"]);
    let (_, page) = get(holder_b.clone(), "/v1/transfers").await;
    assert_eq!(ids(&page, "/transfer/id"), ["3"], "B sees only the transfer into its account");
    let (_, page) = get(merchant.clone(), "/v1/transfers").await;
    assert_eq!(ids(&page, "/transfer/id"), ["2"]);
    let (_, page) = get(holder_a.clone(), "/v1/transfers?account=1001&amount_min=2").await;
    assert_eq!(ids(&page, "/transfer/id"), ["1"]);
    let (status, page) = get(holder_b.clone(), "/v1/transfers?account=1001").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    for bad in [
        "/v1/accounts?owner=x",
        "/v1/accounts?asset=USD",
        "/v1/transfers?status=lost",
        "/v1/transfers?from_ns=9&to_ns=3",
        "/v1/transfers?after=-1",
        "/v1/tabs?status=closed",
        "/v1/principals?role=king",
        "/v1/accounts?limit=0",
        "/v1/accounts?limit=1001",
        "/v1/accounts?colour=red",
    ] {
        let (status, problem) = get(world.operator.clone(), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
        assert_eq!(problem["code"], "invalid_query", "{bad}: {problem}");
    }
    let (_, page) = get(world.operator.clone(), "/v1/principals?role=holder").await;
    assert_eq!(ids(&page, "/id"), [A.to_string(), B.to_string()]);
}
