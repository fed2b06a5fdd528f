//! Goal: a caller who may not use a route learns nothing from it, however malformed its request:
//! who may ask is checked before the request's fields are read, so the answer is the refusal
//! (403, or 404 for what the caller may not see), never a 400 about the body.
//! Method: the real router over a real engine with a holder, a second holder, a merchant, an
//! analyst and keys of narrow scope; each case sends a malformed request as a caller the route
//! refuses and asserts the refusal's status and code. (Found by reviewing the move of the use
//! cases into obol-app: several routes had begun to parse before they authorized.)

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};

mod support;

async fn call(router: &axum::Router, key: &str, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let builder = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {key}"));
    let request = match body {
        Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    let (status, answer) = support::send(router, request).await;
    (status.as_u16(), answer["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn r11_who_may_ask_is_checked_before_the_request_is_read() {
    let parties = support::parties("check-order", "1000000", 7).await;
    let router = &parties.started.router;
    let operator = &parties.started.operator;
    let op = |path: &'static str, body: Value| async move {
        let (status, value) = support::post(router, operator, path, body, None).await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    };
    op("/v1/principals", json!({"id": "200", "role": "holder", "name": "Bob"})).await;
    op("/v1/principals", json!({"id": "400", "role": "analyst", "name": "Ana"})).await;
    let bob = op("/v1/principals/200/keys", json!({})).await["key"].as_str().unwrap().to_string();
    let analyst = op("/v1/principals/400/keys", json!({})).await["key"].as_str().unwrap().to_string();
    let alice_read =
        op("/v1/principals/100/keys", json!({"scopes": ["read"]})).await["key"].as_str().unwrap().to_string();
    let alice_pay =
        op("/v1/principals/100/keys", json!({"scopes": ["pay"]})).await["key"].as_str().unwrap().to_string();
    let holder = &parties.holder;

    let bad_tab = json!({"payer_account_id": "1", "payee_account_id": "2", "budget": "lots",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 60, "device_id": "55"});
    let not_yours = json!({"payer_account_id": "1", "payee_account_id": "2", "budget": "100",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 60, "device_id": "not-a-number"});
    let cases: Vec<(&str, &str, Method, &str, Option<Value>, u16, &str)> = vec![
        (
            "an analyst opens a tab with a bad budget",
            &analyst,
            Method::POST,
            "/v1/tabs",
            Some(bad_tab.clone()),
            403,
            "forbidden",
        ),
        (
            "a read key opens a tab with a bad budget",
            &alice_read,
            Method::POST,
            "/v1/tabs",
            Some(bad_tab),
            403,
            "forbidden",
        ),
        (
            "another holder escrows from Alice's account naming a bad device",
            &bob,
            Method::POST,
            "/v1/tabs",
            Some(not_yours),
            404,
            "account_not_found",
        ),
        (
            "an analyst tops up with a bad amount",
            &analyst,
            Method::POST,
            "/v1/tabs/7/topup",
            Some(json!({"amount": "x"})),
            403,
            "forbidden",
        ),
        (
            "a read key settles a tab with a bad id",
            &alice_read,
            Method::POST,
            "/v1/tabs/not-an-id/settle",
            None,
            403,
            "forbidden",
        ),
        ("a pay key reads a tab with a bad id", &alice_pay, Method::GET, "/v1/tabs/not-an-id", None, 403, "forbidden"),
        (
            "a read key submits a tick with a bad id",
            &alice_read,
            Method::POST,
            "/v1/tabs/not-an-id/ticks",
            Some(json!({"index": 1, "word": "zz"})),
            403,
            "forbidden",
        ),
        (
            "another holder sets Alice's monthly limit to nonsense",
            &bob,
            Method::POST,
            "/v1/accounts/1/monthly-limit",
            Some(json!({"limit": "much"})),
            404,
            "account_not_found",
        ),
        (
            "a holder decides a review with a bad decision",
            holder,
            Method::POST,
            "/v1/risk/reviews/abc/decision",
            Some(json!({"decision": "maybe"})),
            403,
            "forbidden",
        ),
        (
            "a read-only analyst decides a review with a bad decision",
            &alice_read,
            Method::POST,
            "/v1/risk/reviews/abc/decision",
            Some(json!({"decision": "maybe"})),
            403,
            "forbidden",
        ),
        (
            // A holder may list its own holds: the limit is all that is wrong.
            "a holder lists its own holds with a bad limit",
            holder,
            Method::GET,
            "/v1/risk/reviews?limit=many",
            None,
            400,
            "invalid_query",
        ),
        (
            "a holder lists policy changes with a bad cursor",
            holder,
            Method::GET,
            "/v1/risk/policy/changes?after=soon",
            None,
            403,
            "forbidden",
        ),
    ];
    let mut failures = Vec::new();
    for (what, key, method, path, body, status, code) in cases {
        let (got_status, got_code) = call(router, key, method, path, body).await;
        if (got_status, got_code.as_str()) != (status, code) {
            failures.push(format!("{what}: {got_status} {got_code} (expected {status} {code})"));
        }
    }
    // A holder submitting a policy with a bad query: refused before the query is read.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/risk/policy?shadow=perhaps")
        .header(header::AUTHORIZATION, format!("Bearer {holder}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("name = 'x'"))
        .expect("request");
    let (status, answer) = support::send(router, request).await;
    if (status.as_u16(), answer["code"].as_str()) != (403, Some("forbidden")) {
        failures.push(format!("a holder submits a policy with a bad query: {status} {answer}"));
    }
    assert!(
        failures.is_empty(),
        "{} refusals came after reading the request:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
