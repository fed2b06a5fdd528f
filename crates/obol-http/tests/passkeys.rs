//! Goal: passkeys register and approve step-up payments through the API with user verification,
//! an authenticator without user verification cannot register, and a signature counter that
//! goes backwards disables the credential as cloned.
//! Method: the real router over a real engine, and webauthn-authenticator-rs's software passkey
//! as the authenticator, running the full WebAuthn ceremonies against obol's options.

use axum::Router;
use axum::http::StatusCode;
use obol_core::identity::IdentityCommand;
use obol_core::record::Op;
use obol_store::Engine;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

mod support;

struct World {
    router: Router,
    engine: Engine,
    holder: String,
    operator: String,
    _scratch: support::Scratch,
}

use support::post as call;

fn origin() -> Url {
    Url::parse("http://localhost:8402").unwrap()
}

impl World {
    async fn new() -> World {
        let support::Started { router, engine, operator, scratch, .. } = support::start("passkeys");
        for (path, body) in [
            ("/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})),
            ("/v1/accounts", json!({"id": "9", "asset_code": "EUR", "asset_scale": 2})),
            ("/v1/accounts", json!({"id": "1", "asset_code": "EUR", "asset_scale": 2, "owner_id": "100"})),
            ("/v1/accounts", json!({"id": "2", "asset_code": "EUR", "asset_scale": 2})),
            (
                "/v1/transfers",
                json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "9000", "asset_code": "EUR", "asset_scale": 2}),
            ),
        ] {
            let (status, answer) = call(&router, &operator, path, body, None).await;
            assert!(status.is_success(), "{path}: {answer}");
        }
        let (_, key) = call(&router, &operator, "/v1/principals/100/keys", json!({}), None).await;
        World { router, engine, holder: key["key"].as_str().unwrap().to_string(), operator, _scratch: scratch }
    }

    async fn register(&self, authenticator: &mut SoftPasskey) -> (StatusCode, Value) {
        let (status, start) = call(&self.router, &self.holder, "/v1/principals/100/passkeys", json!({}), None).await;
        assert_eq!(status, StatusCode::OK, "{start}");
        let credential = authenticator.do_registration(origin(), soft(&start["options"])).unwrap();
        let body = json!({"ceremony_id": start["ceremony_id"], "credential": credential});
        call(&self.router, &self.holder, "/v1/principals/100/passkeys/finish", body, None).await
    }

    /// Asks for a payment, approves its challenge with the passkey, returns the approval answer
    /// and the challenge id.
    async fn approve_payment(&self, id: &str, authenticator: &mut SoftPasskey) -> ((StatusCode, Value), String) {
        let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": "100", "asset_code": "EUR", "asset_scale": 2});
        let (status, problem) = call(&self.router, &self.holder, "/v1/transfers", body, None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
        let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
        let (status, start) =
            call(&self.router, &self.holder, &format!("/v1/challenges/{challenge}/passkey"), json!({}), None).await;
        assert_eq!(status, StatusCode::OK, "{start}");
        let options: RequestChallengeResponse = serde_json::from_value(start["options"].clone()).unwrap();
        assert_eq!(start["options"]["publicKey"]["userVerification"], "required");
        let credential = authenticator.do_authentication(origin(), options).unwrap();
        let body = json!({"passkey": {"ceremony_id": start["ceremony_id"], "credential": credential}});
        (call(&self.router, &self.holder, &format!("/v1/challenges/{challenge}/approve"), body, None).await, challenge)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_with_user_verification_approves_exactly_the_payment() {
    let world = World::new().await;
    let mut authenticator = SoftPasskey::new(true);
    let (status, registered) = world.register(&mut authenticator).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let ((status, approved), challenge) = world.approve_payment("10", &mut authenticator).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let body = json!({"id": "10", "debit_account_id": "1", "credit_account_id": "2", "amount": "100", "asset_code": "EUR", "asset_scale": 2});
    let (status, answer) = call(&world.router, &world.holder, "/v1/transfers", body, Some(&challenge)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_demands_user_verification_and_a_garbled_answer_is_refused() {
    let world = World::new().await;
    let (status, start) = call(&world.router, &world.holder, "/v1/principals/100/passkeys", json!({}), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(start["options"]["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    // A discoverable credential: sign-in lists none, so the authenticator must find it itself.
    assert_eq!(start["options"]["publicKey"]["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(start["options"]["publicKey"]["authenticatorSelection"]["requireResidentKey"], true);
    let options = soft(&start["options"]);
    assert!(
        SoftPasskey::new(false).do_registration(origin(), options.clone()).is_err(),
        "an authenticator that cannot verify the user declines"
    );
    let mut credential =
        serde_json::to_value(SoftPasskey::new(true).do_registration(origin(), options).unwrap()).unwrap();
    credential["response"]["clientDataJSON"] = json!("eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0");
    let body = json!({"ceremony_id": start["ceremony_id"], "credential": credential});
    let (status, problem) = call(&world.router, &world.holder, "/v1/principals/100/passkeys/finish", body, None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")), "{problem}");
    assert!(world.engine.ledger().read().unwrap().identity().principal(100).unwrap().passkeys.is_empty());
}

fn bump_counters(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "counter" && inner.is_u64() {
                    *inner = json!(100);
                } else {
                    bump_counters(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bump_counters),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_going_backwards_disables_the_passkey_as_cloned() {
    let world = World::new().await;
    let mut authenticator = SoftPasskey::new(true);
    assert_eq!(world.register(&mut authenticator).await.0, StatusCode::CREATED);
    let ((status, _), _) = world.approve_payment("20", &mut authenticator).await;
    assert_eq!(status, StatusCode::OK, "a first assertion sets the counter");
    // Another copy of the key signed 100 times elsewhere: the stored counter is now ahead.
    let record = world.engine.ledger().read().unwrap().identity().principal(100).unwrap().passkeys[0].clone();
    let mut stored: Value = serde_json::from_slice(&record.data).unwrap();
    bump_counters(&mut stored);
    let command = IdentityCommand::PutPasskey {
        principal_id: 100,
        credential_id: record.credential_id,
        data: serde_json::to_vec(&stored).unwrap(),
    };
    world.engine.execute(Op::Identity(command)).await.unwrap();
    let ((status, problem), _) = world.approve_payment("21", &mut authenticator).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("passkey_clone_suspected")),
        "{problem}"
    );
    let ledger = world.engine.ledger().read().unwrap();
    let principal = ledger.identity().principal(100).unwrap();
    assert!(principal.passkeys[0].disabled);
    assert!(principal.usable_passkeys().next().is_none());
    assert!(ledger.identity().events_of(100).iter().any(|e| e.kind.as_str() == "passkey_clone_suspected"));
}

/// A request without a key (the public sign-in routes), or with a session cookie and its CSRF
/// token: the status, the `Set-Cookie` header and the body.
async fn public(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    cookie: Option<(&str, &str)>,
) -> (StatusCode, Option<String>, Value) {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    let mut builder = Request::builder().method(method).uri(path);
    if let Some((token, csrf)) = cookie {
        builder = builder.header(header::COOKIE, format!("__Host-obol_session={token}")).header("x-csrf-token", csrf);
    }
    let request = match body {
        Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let set_cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, set_cookie, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Registration options as SoftPasskey can take them: it keeps its keys by credential id and
/// declines to make a resident key, so the requirement is taken out (SoftPasskey is then told
/// its credential at sign-in, [`discovered`]). The dashboard's browser test registers real
/// discoverable passkeys with Chromium's virtual authenticator and signs in with none listed.
fn soft(options: &Value) -> CreationChallengeResponse {
    let mut options = options.clone();
    options["publicKey"]["authenticatorSelection"]["residentKey"] = json!("discouraged");
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = json!(false);
    serde_json::from_value(options).unwrap()
}

/// What a browser does with sign-in options that list no credential: the authenticator finds the
/// discoverable passkey it holds for the site. SoftPasskey cannot search its store, so it is
/// told the one it holds; the server sees the same assertion either way.
fn discovered(options: &Value, credential_id: &Value) -> RequestChallengeResponse {
    let mut options = options.clone();
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]), "sign-in names no credential");
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    serde_json::from_value(options).unwrap()
}

/// The shape of a JSON value: every object's keys, every leaf's type, recursively.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_signs_in_and_an_unknown_principal_gets_the_same_options_but_the_challenge() {
    let world = World::new().await;
    let mut authenticator = SoftPasskey::new(true);
    let (status, registered) = world.register(&mut authenticator).await;
    assert_eq!(status, StatusCode::CREATED);
    let credential_id = registered["credential_id"].clone();

    // The challenge for a principal with a passkey, and for ones without (unknown, or known but
    // with no passkey): the same options but for the random challenge, which is as long, so the
    // answer does not say who has one, nor how many, and does not change at a restart.
    let ask = |id: &str| json!({"principal_id": id});
    let (status, _, real) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("100")), None).await;
    assert_eq!(status, StatusCode::OK, "{real}");
    let (_, _, unknown) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("999")), None).await;
    let (_, _, unknown_again) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("999")), None).await;
    let (_, _, operator) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("1")), None).await;
    let but_challenge = |v: &Value| {
        let mut options = v["options"].clone();
        let challenge = options["publicKey"]["challenge"].take();
        (options, challenge.as_str().map(str::len), v["ceremony_id"].as_str().map(str::len))
    };
    for decoy in [&unknown, &unknown_again, &operator] {
        assert_eq!(but_challenge(decoy), but_challenge(&real), "decoy {decoy} against real {real}");
    }
    assert_eq!(real["options"]["publicKey"]["allowCredentials"], json!([]));
    assert_eq!(shape(&real["options"]), shape(&unknown["options"]));
    assert_ne!(unknown["options"]["publicKey"]["challenge"], unknown_again["options"]["publicKey"]["challenge"]);
    let (status, _, problem) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("-1")), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_id")), "{problem}");

    // The passkey answers its challenge: a session, opened by the passkey, with a second factor.
    let options = discovered(&real["options"], &credential_id);
    let credential = serde_json::to_value(authenticator.do_authentication(origin(), options).unwrap()).unwrap();
    let body = json!({"passkey": {"ceremony_id": real["ceremony_id"], "credential": credential}});
    let (status, cookie, session) = public(&world.router, "POST", "/v1/sessions", Some(body.clone()), None).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!((session["credential"].as_str(), session["second_factor"].as_bool()), (Some("passkey"), Some(true)));
    let cookie = cookie.unwrap();
    assert!(cookie.contains("HttpOnly; Secure; SameSite=Strict"), "{cookie}");
    let token = cookie.strip_prefix("__Host-obol_session=").unwrap().split(';').next().unwrap().to_string();
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    let (status, _, me) = public(&world.router, "GET", "/v1/me", None, Some((&token, &csrf))).await;
    assert_eq!(
        (status, me["credential"].as_str(), me["principal"]["id"].as_str()),
        (StatusCode::OK, Some("passkey"), Some("100"))
    );
    // A person, not a device: it manages its own devices and factors.
    let (status, _, devices) =
        public(&world.router, "GET", "/v1/principals/100/devices", None, Some((&token, &csrf))).await;
    assert_eq!(status, StatusCode::OK, "{devices}");

    // Each ceremony works once; a decoy's never works; a mixed-up body is refused.
    let (status, cookie, problem) = public(&world.router, "POST", "/v1/sessions", Some(body), None).await;
    assert_eq!((status, problem["code"].as_str(), cookie), (StatusCode::UNAUTHORIZED, Some("unauthorized"), None));
    let decoy_body = json!({"passkey": {"ceremony_id": unknown["ceremony_id"], "credential": credential}});
    let (status, _, problem) = public(&world.router, "POST", "/v1/sessions", Some(decoy_body), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{problem}");
    let both = json!({"api_key": world.holder, "passkey": {"ceremony_id": "x", "credential": {}}});
    let (status, _, problem) = public(&world.router, "POST", "/v1/sessions", Some(both), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")), "{problem}");
    let (status, _, problem) = public(&world.router, "POST", "/v1/sessions", Some(json!({})), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")), "{problem}");

    // The passkey disabled (a suspected clone): its session ends at the next request.
    let record = world.engine.ledger().read().unwrap().identity().principal(100).unwrap().passkeys[0].clone();
    let command = IdentityCommand::DisablePasskey { principal_id: 100, credential_id: record.credential_id };
    world.engine.execute(Op::Identity(command)).await.unwrap();
    let (status, _, problem) = public(&world.router, "GET", "/v1/me", None, Some((&token, &csrf))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{problem}");
    // And with no usable passkey left, the principal's challenge is a decoy now, which the same
    // passkey cannot answer.
    let (_, _, now) = public(&world.router, "POST", "/v1/sessions/passkey", Some(ask("100")), None).await;
    assert_eq!(but_challenge(&now), but_challenge(&real));
    let credential = serde_json::to_value(
        authenticator.do_authentication(origin(), discovered(&now["options"], &credential_id)).unwrap(),
    )
    .unwrap();
    let body = json!({"passkey": {"ceremony_id": now["ceremony_id"], "credential": credential}});
    let (status, _, problem) = public(&world.router, "POST", "/v1/sessions", Some(body), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_lists_and_removes_its_passkeys_and_the_sessions_they_opened_end() {
    let world = World::new().await;
    let mut authenticator = SoftPasskey::new(true);
    assert_eq!(world.register(&mut authenticator).await.0, StatusCode::CREATED);
    let list = |key: String| {
        let router = world.router.clone();
        async move {
            use axum::body::Body;
            use axum::http::{Request, header};
            let request = Request::builder()
                .uri("/v1/principals/100/passkeys")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            support::send(&router, request).await
        }
    };
    let (status, listed) = list(world.holder.clone()).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["usable"], true);
    let credential_id = listed[0]["credential_id"].as_str().unwrap().to_string();

    // Signed in with it.
    let (_, _, real) =
        public(&world.router, "POST", "/v1/sessions/passkey", Some(json!({"principal_id": "100"})), None).await;
    let options = discovered(&real["options"], &json!(credential_id));
    let credential = serde_json::to_value(authenticator.do_authentication(origin(), options).unwrap()).unwrap();
    let body = json!({"passkey": {"ceremony_id": real["ceremony_id"], "credential": credential}});
    let (status, cookie, session) = public(&world.router, "POST", "/v1/sessions", Some(body), None).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let token = cookie.unwrap().strip_prefix("__Host-obol_session=").unwrap().split(';').next().unwrap().to_string();
    let csrf = session["csrf_token"].as_str().unwrap().to_string();

    // Another holder neither sees nor removes it.
    let (_, other) = call(
        &world.router,
        &world.operator,
        "/v1/principals",
        json!({"id": "101", "role": "holder", "name": "Bob"}),
        None,
    )
    .await;
    assert!(other["id"].is_string(), "{other}");
    let (_, key) = call(&world.router, &world.operator, "/v1/principals/101/keys", json!({}), None).await;
    let bob = key["key"].as_str().unwrap().to_string();
    let (status, _) = list(bob.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = format!("/v1/principals/100/passkeys/{credential_id}");
    let delete = |key: &str| {
        use axum::body::Body;
        use axum::http::{Method, Request, header};
        Request::builder()
            .method(Method::DELETE)
            .uri(&path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, problem) = support::send(&world.router, delete(&bob)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("principal_not_found")), "{problem}");

    // The holder removes it, through the session it opened: the session ends at once.
    let (status, _, _) = public(&world.router, "DELETE", &path, None, Some((&token, &csrf))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, problem) = public(&world.router, "GET", "/v1/me", None, Some((&token, &csrf))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{problem}");
    let (status, listed) = list(world.holder.clone()).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{listed}");
    let (status, problem) = support::send(&world.router, delete(&world.holder)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("passkey_not_found")), "{problem}");
    let (_, activity) = {
        use axum::body::Body;
        use axum::http::{Request, header};
        let request = Request::builder()
            .uri("/v1/principals/100/activity")
            .header(header::AUTHORIZATION, format!("Bearer {}", world.holder))
            .body(Body::empty())
            .unwrap();
        support::send(&world.router, request).await
    };
    assert!(activity.as_array().unwrap().iter().any(|e| e["event"] == "passkey_removed"), "{activity}");
    // The same authenticator may be registered again.
    assert_eq!(world.register(&mut authenticator).await.0, StatusCode::CREATED);
}
