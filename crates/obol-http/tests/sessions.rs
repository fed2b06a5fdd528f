//! Goal: a dashboard session is exactly as strong as the API key it came from, and no stronger.
//! Its cookie is host-only, HttpOnly, Secure and SameSite=Strict. A request through it that
//! changes something needs its CSRF token and must come from the same site. A principal with
//! TOTP signs in only with a current code. A session ends when its key is revoked, when its
//! principal is suspended, on sign-out, and on sign-out everywhere; another principal's
//! sessions stay.
//! Method: the real router over a real engine, with requests carrying cookies and headers as a
//! browser sends them. The idle and absolute limits are tested in `obol_app::sessions` on its
//! own clock.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
mod support;

/// How a request proves who sends it.
enum As<'a> {
    Key(&'a str),
    /// A session cookie, with the CSRF token to send (if any) and the `Sec-Fetch-Site` header.
    Cookie {
        token: &'a str,
        csrf: Option<&'a str>,
        site: Option<&'a str>,
    },
    Nobody,
}

async fn send(
    router: &Router,
    who: As<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut builder = Request::builder().method(method).uri(path);
    match who {
        As::Key(key) => builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
        As::Cookie { token, csrf, site } => {
            builder = builder.header(header::COOKIE, format!("theme=dark; __Host-obol_session={token}"));
            if let Some(csrf) = csrf {
                builder = builder.header("x-csrf-token", csrf);
            }
            if let Some(site) = site {
                builder = builder.header("sec-fetch-site", site);
            }
        }
        As::Nobody => {}
    }
    let request = match body {
        Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Signs in with `key` (and `code`): the cookie's token and the session.
async fn sign_in(router: &Router, key: &str, code: Option<&str>) -> (String, Value) {
    match code {
        Some(code) => sign_in_with(router, json!({"api_key": key, "code": code})).await,
        None => sign_in_with(router, json!({"api_key": key})).await,
    }
}

/// Signs in with `body`: the cookie's token and the session.
async fn sign_in_with(router: &Router, body: Value) -> (String, Value) {
    let (status, headers, session) = send(router, As::Nobody, Method::POST, "/v1/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    let token = cookie.strip_prefix("__Host-obol_session=").unwrap().split(';').next().unwrap().to_string();
    (token, session)
}

/// A session cookie for a request that changes nothing.
fn cookie(token: &str) -> As<'_> {
    As::Cookie { token, csrf: None, site: None }
}

struct World {
    router: Router,
    operator: String,
    _scratch: support::Scratch,
}

impl World {
    fn new() -> World {
        let started = support::start("sessions");
        World { router: started.router, operator: started.operator, _scratch: started.scratch }
    }

    async fn op(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, _, value) = send(&self.router, As::Key(&self.operator), method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// A holder and one of its keys: (key text, key id).
    async fn holder(&self, id: u128) -> (String, String) {
        let body = json!({"id": id.to_string(), "role": "holder", "name": format!("holder {id}")});
        self.op(Method::POST, "/v1/principals", Some(body)).await;
        let key = self.op(Method::POST, &format!("/v1/principals/{id}/keys"), Some(json!({}))).await;
        (key["key"].as_str().unwrap().to_string(), key["key_id"].as_str().unwrap().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_is_host_only_httponly_secure_strict_and_needs_its_csrf_token_to_change_anything() {
    let world = World::new();
    let (key, _) = world.holder(100).await;
    let (status, headers, session) =
        send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(json!({"api_key": key}))).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for flag in ["__Host-obol_session=", "; Path=/", "; HttpOnly", "; Secure", "; SameSite=Strict", "; Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    assert_eq!((session["principal_id"].as_str(), session["role"].as_str()), (Some("100"), Some("holder")));
    assert_eq!(session["second_factor"], false);
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(csrf.len(), 43, "256 random bits");
    let token = cookie.strip_prefix("__Host-obol_session=").unwrap().split(';').next().unwrap().to_string();
    assert!(!session.to_string().contains(&token), "the token is only in the cookie");

    // Reading needs only the cookie; the session acts as its key's principal.
    let reader = As::Cookie { token: &token, csrf: None, site: None };
    let (status, _, me) = send(&world.router, reader, Method::GET, "/v1/me", None).await;
    assert_eq!((status, me["principal"]["id"].as_str()), (StatusCode::OK, Some("100")), "{me}");
    let (status, _, current) = send(
        &world.router,
        As::Cookie { token: &token, csrf: None, site: Some("same-origin") },
        Method::GET,
        "/v1/session",
        None,
    )
    .await;
    assert_eq!((status, current["csrf_token"].as_str()), (StatusCode::OK, Some(csrf.as_str())), "{current}");

    // Changing something needs the CSRF token, from the same site.
    let alerts = json!({"payment_over": {"asset_code": "USD", "asset_scale": 2, "amount": "500"}});
    for (csrf_sent, site, why) in [
        (None, None, "no token"),
        (Some("A".repeat(43)), None, "a wrong token"),
        (Some(csrf[..42].to_string()), None, "a token cut short"),
        (Some(csrf.clone()), Some("cross-site"), "another site"),
        (Some(csrf.clone()), Some("same-site"), "a sibling subdomain"),
    ] {
        let who = As::Cookie { token: &token, csrf: csrf_sent.as_deref(), site };
        let (status, _, problem) =
            send(&world.router, who, Method::PUT, "/v1/principals/100/alerts", Some(alerts.clone())).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("csrf_refused")),
            "{why}: {problem}"
        );
    }
    let who = As::Cookie { token: &token, csrf: Some(&csrf), site: Some("same-origin") };
    let (status, _, saved) =
        send(&world.router, who, Method::PUT, "/v1/principals/100/alerts", Some(alerts.clone())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, _, read) = send(&world.router, As::Key(&key), Method::GET, "/v1/principals/100/alerts", None).await;
    assert_eq!(read["payment_over"]["amount"], "500", "the change went through: {read}");

    // A session is no stronger than its key: another holder's data stays hidden.
    world.holder(200).await;
    let (status, _, _) = send(
        &world.router,
        As::Cookie { token: &token, csrf: None, site: None },
        Method::GET,
        "/v1/principals/200/alerts",
        None,
    )
    .await;
    assert!(status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN, "{status}");

    // A made-up or altered token is no session.
    let mut altered = token.clone();
    altered.replace_range(..1, if token.starts_with('A') { "B" } else { "A" });
    for bad in [altered.as_str(), "", "x"] {
        let (status, _, _) =
            send(&world.router, As::Cookie { token: bad, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }

    // Signing out ends the session and clears the cookie; the key itself still works.
    let (status, _, problem) =
        send(&world.router, As::Cookie { token: &token, csrf: None, site: None }, Method::DELETE, "/v1/session", None)
            .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf_refused")),
        "sign-out needs the token too"
    );
    let (status, headers, _) = send(
        &world.router,
        As::Cookie { token: &token, csrf: Some(&csrf), site: None },
        Method::DELETE,
        "/v1/session",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &token, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&world.router, As::Key(&key), Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::OK);
    // Through a key, there is no session to show or end.
    for method in [Method::GET, Method::DELETE] {
        let (status, _, problem) = send(&world.router, As::Key(&key), method, "/v1/session", None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("session_not_found")));
    }
    // A wrong key signs nobody in, and says no more than a wrong key does.
    let (status, headers, problem) =
        send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(json!({"api_key": format!("{key}x")})))
            .await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    assert!(headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_is_needed_to_sign_in_once_enrolled_and_revocation_suspension_and_sign_out_everywhere_end_sessions() {
    let world = World::new();
    let (key, key_id) = world.holder(100).await;
    let (other_key, _) = world.holder(200).await;
    let (status, _, enrollment) =
        send(&world.router, As::Key(&key), Method::POST, "/v1/principals/100/totp", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{enrollment}");
    let secret =
        totp_rs::Secret::try_from_base32(enrollment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let now_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = |steps: i64| {
        totp_rs::Builder::new()
            .with_secret(secret.clone())
            .build_noncompliant()
            .generate((now_s() as i64 + steps * 30) as u64)
            .to_string()
    };
    let (status, _, confirmed) = send(
        &world.router,
        As::Key(&key),
        Method::POST,
        "/v1/principals/100/totp/confirm",
        Some(json!({"code": code(0)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let recovery: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();

    let (status, _, problem) =
        send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(json!({"api_key": key}))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("second_factor_required")),
        "{problem}"
    );
    let wrong = if code(1) == "000000" { "111111" } else { "000000" };
    let (status, _, problem) =
        send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(json!({"api_key": key, "code": wrong})))
            .await;
    assert!(status.is_client_error() && status != StatusCode::CREATED, "{status} {problem}");
    let (first, session) = sign_in(&world.router, &key, Some(&code(1))).await;
    assert_eq!(session["second_factor"], true);
    let (status, _, problem) =
        send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(json!({"api_key": key, "code": code(1)})))
            .await;
    assert!(status.is_client_error(), "a code is used once: {status} {problem}");

    // Sign out everywhere ends every session of that principal, and no other's.
    // A code works once (TOTP steps only move forward); a recovery code signs in instead.
    let body = json!({"api_key": key, "recovery_code": recovery[0]});
    let (status, _, _) = send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(&world.router, As::Nobody, Method::POST, "/v1/sessions", Some(body)).await;
    assert!(status.is_client_error(), "a recovery code works once");
    let (second, _) = sign_in_with(&world.router, json!({"api_key": key, "recovery_code": recovery[1]})).await;
    let (others, _) = sign_in(&world.router, &other_key, None).await;
    let csrf = session["csrf_token"].as_str().unwrap();
    let (status, _, _) = send(
        &world.router,
        As::Cookie { token: &first, csrf: Some(csrf), site: None },
        Method::DELETE,
        "/v1/principals/200/sessions",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a holder cannot sign another out");
    let (status, headers, ended) = send(
        &world.router,
        As::Cookie { token: &first, csrf: Some(csrf), site: None },
        Method::DELETE,
        "/v1/principals/100/sessions",
        None,
    )
    .await;
    assert_eq!((status, ended["sessions_ended"].as_u64()), (StatusCode::OK, Some(3)), "{ended}");
    assert!(headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    for token in [&first, &second] {
        let (status, _, _) =
            send(&world.router, As::Cookie { token, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &others, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "another principal's session stays");

    // A revoked key ends the sessions it opened at once.
    let (third, _) = sign_in_with(&world.router, json!({"api_key": key, "recovery_code": recovery[2]})).await;
    world.op(Method::DELETE, &format!("/v1/keys/{key_id}"), None).await;
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &third, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Suspending a principal ends its sessions at once; the operator can end anyone's.
    world.op(Method::POST, "/v1/principals/200/status", Some(json!({"status": "suspended"}))).await;
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &others, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "suspension ended the session");
    let ended = world.op(Method::DELETE, "/v1/principals/200/sessions", None).await;
    assert_eq!(ended["sessions_ended"], 0, "suspension had already ended its session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_suspension_ends_sessions_even_without_a_request_and_signing_out_everywhere_needs_manage() {
    let world = World::new();
    let (key, _) = world.holder(100).await;
    // Suspended and reactivated with no request in between: the session does not come back.
    let (token, _) = sign_in(&world.router, &key, None).await;
    world.op(Method::POST, "/v1/principals/100/status", Some(json!({"status": "suspended"}))).await;
    world.op(Method::POST, "/v1/principals/100/status", Some(json!({"status": "active"}))).await;
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &token, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a stolen cookie must not outlive a suspension");
    // A read-only key (the operator's monitoring, or the holder's) cannot sign anyone out.
    let (token, _) = sign_in(&world.router, &key, None).await;
    let monitor = world.op(Method::POST, "/v1/principals/1/keys", Some(json!({"scopes": ["read"]}))).await;
    let reader = world.op(Method::POST, "/v1/principals/100/keys", Some(json!({"scopes": ["read"]}))).await;
    for read_only in [monitor["key"].as_str().unwrap(), reader["key"].as_str().unwrap()] {
        let (status, _, problem) =
            send(&world.router, As::Key(read_only), Method::DELETE, "/v1/principals/100/sessions", None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    }
    let (status, _, _) =
        send(&world.router, As::Cookie { token: &token, csrf: None, site: None }, Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "the session is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_before_totp_was_set_up_ends_once_it_is_unless_it_confirmed_the_code() {
    let world = World::new();
    let (key, _) = world.holder(100).await;
    // Two browsers signed in with the key alone: no second factor yet.
    let (confirming, confirming_session) = sign_in(&world.router, &key, None).await;
    let (other, _) = sign_in(&world.router, &key, None).await;
    let csrf = confirming_session["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(send(&world.router, cookie(&other), Method::GET, "/v1/me", None).await.0, StatusCode::OK);

    // TOTP set up and confirmed in the first browser, with a current code.
    let with_csrf = As::Cookie { token: &confirming, csrf: Some(&csrf), site: Some("same-origin") };
    let (status, _, enrollment) =
        send(&world.router, with_csrf, Method::POST, "/v1/principals/100/totp", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{enrollment}");
    let secret =
        totp_rs::Secret::try_from_base32(enrollment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = totp_rs::Builder::new().with_secret(secret).build_noncompliant().generate(now_s).to_string();
    let with_csrf = As::Cookie { token: &confirming, csrf: Some(&csrf), site: Some("same-origin") };
    let (status, _, confirmed) =
        send(&world.router, with_csrf, Method::POST, "/v1/principals/100/totp/confirm", Some(json!({"code": code})))
            .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");

    // The browser that confirmed the code goes on; the other, which never gave one, is signed out.
    assert_eq!(send(&world.router, cookie(&confirming), Method::GET, "/v1/me", None).await.0, StatusCode::OK);
    let (status, _, problem) = send(&world.router, cookie(&other), Method::GET, "/v1/me", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{problem}");
    let (status, _, _) = send(&world.router, cookie(&other), Method::GET, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "and stays signed out");
    // The key itself still works on the API: the code is asked of browsers signing in.
    assert_eq!(send(&world.router, As::Key(&key), Method::GET, "/v1/me", None).await.0, StatusCode::OK);
}
