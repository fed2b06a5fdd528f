//! Goal: TOTP follows RFC 6238/4226 to the digit, a code is never accepted twice, five failures
//! lock factor checks (warning first, never naming the factor), and a step-up approval lets
//! through exactly the approved operation once: one minor unit more, another payee, or a second
//! use, and it is void.
//! Method: the RFC appendix vectors against the TOTP generator obol uses; then the real router
//! over a real engine, with a holder who enrolls an authenticator through the API and computes
//! codes from the enrolment's secret as an authenticator app would.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
mod support;

fn totp(secret: &[u8], digits: u8, algorithm: totp_rs::Algorithm) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_algorithm(algorithm)
        .with_digits(digits)
        .with_secret(secret.to_vec())
        .with_step_duration(30)
        .build_noncompliant()
}

#[test]
fn rfc4226_appendix_d_hotp_values() {
    let generator = totp(b"12345678901234567890", 6, totp_rs::Algorithm::SHA1);
    let expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    for (counter, code) in expected.iter().enumerate() {
        assert_eq!(generator.generate(counter as u64 * 30).to_string(), *code, "counter {counter}");
    }
}

#[test]
fn rfc6238_appendix_b_totp_values() {
    let sha1 = totp(b"12345678901234567890", 8, totp_rs::Algorithm::SHA1);
    let sha256 = totp(b"12345678901234567890123456789012", 8, totp_rs::Algorithm::SHA256);
    let sha512 =
        totp(b"1234567890123456789012345678901234567890123456789012345678901234", 8, totp_rs::Algorithm::SHA512);
    let table = [
        (59u64, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];
    for (time, one, two_five_six, five_one_two) in table {
        assert_eq!(sha1.generate(time).to_string(), one, "SHA-1 T={time}");
        assert_eq!(sha256.generate(time).to_string(), two_five_six, "SHA-256 T={time}");
        assert_eq!(sha512.generate(time).to_string(), five_one_two, "SHA-512 T={time}");
    }
}

struct World {
    router: Router,
    operator: String,
    holder: String,
    secret: Vec<u8>,
    /// The recovery codes confirmation gave; the last one approves step-up policy changes.
    recovery_codes: Vec<String>,
    _scratch: support::Scratch,
}

use support::post as call;

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl World {
    /// A holder (100) with account 1 funded, accounts 2 and 3 of a merchant (300), and a
    /// confirmed authenticator.
    async fn new() -> World {
        World::configured(|state| state).await
    }

    async fn configured(configure: impl FnOnce(obol_http::AppState) -> obol_http::AppState) -> World {
        let support::Started { router, operator, scratch, .. } = support::start_with("mfa", configure);
        let op = |path: &'static str, body: Value| {
            let router = router.clone();
            let operator = operator.clone();
            async move {
                let (status, value) = call(&router, &operator, path, body, None).await;
                assert!(status.is_success(), "{path}: {status} {value}");
                value
            }
        };
        op("/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
        op("/v1/principals", json!({"id": "300", "role": "merchant", "name": "Shop"})).await;
        let holder = op("/v1/principals/100/keys", json!({})).await["key"].as_str().unwrap().to_string();
        op("/v1/accounts", json!({"id": "9", "asset_code": "EUR", "asset_scale": 2})).await;
        op("/v1/accounts", json!({"id": "1", "asset_code": "EUR", "asset_scale": 2, "owner_id": "100"})).await;
        op("/v1/accounts", json!({"id": "2", "asset_code": "EUR", "asset_scale": 2, "owner_id": "300"})).await;
        op("/v1/accounts", json!({"id": "3", "asset_code": "EUR", "asset_scale": 2, "owner_id": "300"})).await;
        op("/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "1000000", "asset_code": "EUR", "asset_scale": 2})).await;
        let (status, enrollment) = call(&router, &holder, "/v1/principals/100/totp", json!({}), None).await;
        assert_eq!(status, StatusCode::CREATED, "{enrollment}");
        let uri = enrollment["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/obol:Alice?"), "{uri}");
        // SHA-1, 6 digits and 30 s are the otpauth defaults, so the URI may leave them out.
        assert!(uri.contains("issuer=obol") && uri.contains("secret="), "{uri}");
        assert!(!uri.contains("digits=") || uri.contains("digits=6"), "{uri}");
        assert!(!uri.contains("period=") || uri.contains("period=30"), "{uri}");
        assert!(enrollment["qr_svg"].as_str().unwrap().starts_with("<svg"));
        let secret =
            totp_rs::Secret::try_from_base32(enrollment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
        assert_eq!(secret.len(), 20, "160-bit secret");
        let mut world = World { router, operator, holder, secret, recovery_codes: Vec::new(), _scratch: scratch };
        let (status, codes) =
            call(&world.router, &world.holder, "/v1/principals/100/totp/confirm", json!({"code": world.code(0)}), None)
                .await;
        assert_eq!(status, StatusCode::OK, "{codes}");
        assert_eq!(codes["recovery_codes"].as_array().unwrap().len(), 10);
        world.recovery_codes =
            codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        world
    }

    /// The code an authenticator app shows `steps` steps from now.
    fn code(&self, steps: i64) -> String {
        let time = (now_s() as i64 + steps * 30) as u64;
        totp(&self.secret, 6, totp_rs::Algorithm::SHA1).generate(time).to_string()
    }

    async fn approve(&self, challenge: &str, body: Value) -> (StatusCode, Value) {
        call(&self.router, &self.holder, &format!("/v1/challenges/{challenge}/approve"), body, None).await
    }

    /// Sets the holder's step-up policy: a change the holder's factor must approve (here with
    /// the last recovery code), bound to exactly this policy.
    async fn set_step_up(&self, policy: Value) -> StatusCode {
        let path = "/v1/principals/100/step-up";
        let (status, problem) = call(&self.router, &self.holder, path, policy.clone(), None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
        assert_eq!(problem["challenge"]["change"], "step_up_policy");
        let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
        let recovery = self.recovery_codes.last().unwrap().clone();
        let (status, approved) = self.approve(&challenge, json!({"recovery_code": recovery})).await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        call(&self.router, &self.holder, path, policy, Some(&challenge)).await.0
    }

    async fn pay(&self, id: &str, to: &str, amount: &str, approval: Option<&str>) -> (StatusCode, Value) {
        let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": to, "amount": amount, "asset_code": "EUR", "asset_scale": 2});
        call(&self.router, &self.holder, "/v1/transfers", body, approval).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_covers_exactly_one_operation_once() {
    let world = World::new().await;
    let (status, problem) = world.pay("10", "2", "1500", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    let challenge = &problem["challenge"];
    assert_eq!(challenge["amount"], "1500");
    assert_eq!(challenge["asset_code"], "EUR");
    assert_eq!(challenge["payees"], json!(["2"]));
    assert_eq!(challenge["reasons"], json!(["new_payee"]));
    let id = challenge["id"].as_str().unwrap().to_string();
    // Approving with the wrong code fails; with the right one (next step: the confirming step is spent) works.
    let (status, answer) = world.approve(&id, json!({"code": "000000"})).await;
    assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("factor_check_failed")));
    assert_eq!(answer["attempts_left"], 4);
    let good_code = world.code(1);
    let (status, answer) = world.approve(&id, json!({"code": good_code})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // One minor unit more: not this approval.
    let (status, problem) = world.pay("10", "2", "1501", Some(&id)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")));
    // Another payee: not this approval.
    let (status, _) = world.pay("10", "3", "1500", Some(&id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Exactly the approved operation: through, once.
    let (status, answer) = world.pay("10", "2", "1500", Some(&id)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, problem) = world.pay("11", "3", "1500", Some(&id)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("requires_action")),
        "used approvals are void"
    );
    // A payee paid before needs no approval.
    assert_eq!(world.pay("12", "2", "700", None).await.0, StatusCode::CREATED);
    // The same code twice is refused.
    let challenge = world.pay("13", "3", "5", None).await.1["challenge"]["id"].as_str().unwrap().to_string();
    let (status, answer) = world.approve(&challenge, json!({"code": good_code})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("factor_check_failed")),
        "a code is never accepted twice: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_over_the_threshold_need_approval_and_recovery_codes_work_once() {
    let world = World::new().await;
    let policy = json!({"above": {"asset_code": "EUR", "asset_scale": 2, "amount": "3000"}, "new_payee": false, "new_device": true});
    assert_eq!(world.set_step_up(policy).await, StatusCode::OK);
    assert_eq!(world.pay("20", "2", "3000", None).await.0, StatusCode::CREATED, "EUR 30.00 is not above the threshold");
    let (status, problem) = world.pay("21", "2", "3001", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(problem["challenge"]["reasons"], json!(["amount_over_threshold"]));
    // A recovery code approves once.
    let (_, codes) = {
        // Re-enrolment needs a current code; use a fresh authenticator to get fresh recovery codes.
        let (status, enrollment) =
            call(&world.router, &world.holder, "/v1/principals/100/totp", json!({"code": world.code(1)}), None).await;
        assert_eq!(status, StatusCode::CREATED, "{enrollment}");
        let secret =
            totp_rs::Secret::try_from_base32(enrollment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
        let code = totp(&secret, 6, totp_rs::Algorithm::SHA1).generate(now_s()).to_string();
        call(&world.router, &world.holder, "/v1/principals/100/totp/confirm", json!({"code": code}), None).await
    };
    let recovery = codes["recovery_codes"][0].as_str().unwrap().to_string();
    let id = problem["challenge"]["id"].as_str().unwrap();
    let (status, _) = world.approve(id, json!({"recovery_code": recovery})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.pay("21", "2", "3001", Some(id)).await.0, StatusCode::CREATED);
    let id = world.pay("22", "2", "3001", None).await.1["challenge"]["id"].as_str().unwrap().to_string();
    let (status, answer) = world.approve(&id, json!({"recovery_code": recovery})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("factor_check_failed")),
        "recovery codes are single use"
    );
}

/// Regression (attack review): a payment that went through with an approval, retried with the
/// same id because its answer was lost, was answered `requires_action` with a new challenge; a
/// client that believed it could pay again under a new id. The ledger has it: the retry answers
/// that it exists, whatever approval it carries, and asks for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_an_approved_payment_that_went_through_asks_for_no_second_approval() {
    let world = World::new().await;
    let policy = json!({"above": {"asset_code": "EUR", "asset_scale": 2, "amount": "3000"}, "new_payee": false, "new_device": false});
    assert_eq!(world.set_step_up(policy).await, StatusCode::OK);
    let (status, problem) = world.pay("25", "2", "4000", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    let id = problem["challenge"]["id"].as_str().unwrap().to_string();
    let (status, _) = world.approve(&id, json!({"code": world.code(1)})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.pay("25", "2", "4000", Some(&id)).await.0, StatusCode::CREATED);
    for approval in [Some(id.as_str()), None] {
        let (status, answer) = world.pay("25", "2", "4000", approval).await;
        assert_eq!(status, StatusCode::OK, "the retry meets the transfer that exists: {answer}");
    }
    // Another amount under that id is still the ledger's refusal, not a second factor's.
    let (status, answer) = world.pay("25", "2", "4001", None).await;
    assert_ne!(answer["code"].as_str(), Some("requires_action"), "{status} {answer}");
}

/// Regression (attack review): an approval was bound to payer, payee, amount and asset only, so
/// approving a tab opening also paid a plain transfer of its budget to its payee (and an opening's
/// approval could top up another tab). It is bound to the kind of payment and the tab or
/// transfer id too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pays_only_the_kind_of_payment_and_the_tab_it_was_asked_for() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let world = World::new().await;
    let policy = json!({"above": {"asset_code": "EUR", "asset_scale": 2, "amount": "3000"}, "new_payee": false, "new_device": false});
    assert_eq!(world.set_step_up(policy).await, StatusCode::OK);
    let key = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "meter", "x": Base64UrlUnpadded::encode_string(&key.verifying_key().to_bytes())});
    let (status, _) =
        call(&world.router, &world.holder, "/v1/principals/100/devices", json!({"id": "61", "jwk": jwk}), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let tab = |id: &str| {
        json!({"id": id, "payer_account_id": "1", "payee_account_id": "2", "budget": "4000",
            "asset_code": "EUR", "asset_scale": 2, "timeout_s": 600, "device_id": "61"})
    };
    let (status, problem) = call(&world.router, &world.holder, "/v1/tabs", tab("700"), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    let id = problem["challenge"]["id"].as_str().unwrap().to_string();
    let (status, _) = world.approve(&id, json!({"code": world.code(1)})).await;
    assert_eq!(status, StatusCode::OK);
    // The same payer, payee, amount and asset, as a transfer or as another tab: not this approval.
    let (status, problem) = world.pay("26", "2", "4000", Some(&id)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    let (status, problem) = call(&world.router, &world.holder, "/v1/tabs", tab("701"), Some(&id)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    // The opening it was asked for: through, once.
    let (status, answer) = call(&world.router, &world.holder, "/v1/tabs", tab("700"), Some(&id)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fifth_failure_locks_and_the_sixth_attempt_is_refused_until_unlocked() {
    let world = World::new().await;
    let id = world.pay("30", "2", "100", None).await.1["challenge"]["id"].as_str().unwrap().to_string();
    let approve = |code: String| {
        let router = world.router.clone();
        let holder = world.holder.clone();
        let id = id.clone();
        async move { call(&router, &holder, &format!("/v1/challenges/{id}/approve"), json!({"code": code}), None).await }
    };
    for attempts_left in [4, 3, 2, 1] {
        let (status, answer) = approve("111111".into()).await;
        assert_eq!((status, answer["code"].as_str()), (StatusCode::FORBIDDEN, Some("factor_check_failed")));
        assert_eq!(answer["attempts_left"], attempts_left, "warned before the lock");
        assert!(!answer["detail"].as_str().unwrap().contains("totp"), "never says which factor failed");
    }
    let (status, answer) = approve("111111".into()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("factor_locked")),
        "fifth failure locks"
    );
    let (status, answer) = approve(world.code(1)).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("factor_locked")),
        "sixth attempt, even right, is refused"
    );
    let (status, _) = call(&world.router, &world.operator, "/v1/principals/100/unlock", json!({}), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = approve(world.code(1)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// A payment from device `kid` signed with `key`, optionally carrying an approval.
fn device_payment(key: &ed25519_dalek::SigningKey, kid: &str, id: &str, approval: Option<&str>) -> Request<Body> {
    let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": "50", "asset_code": "EUR", "asset_scale": 2});
    support::signed_transfer(key, kid, &body, &format!("{id}-{}", approval.is_some()), approval)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_first_payment_needs_approval_and_later_ones_do_not() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let world = World::new().await;
    let policy = json!({"new_payee": false, "new_device": true});
    assert_eq!(world.set_step_up(policy).await, StatusCode::OK);
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "kiosk", "x": Base64UrlUnpadded::encode_string(&key.verifying_key().to_bytes())});
    let (status, _) =
        call(&world.router, &world.holder, "/v1/principals/100/devices", json!({"id": "60", "jwk": jwk}), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let send = |request: Request<Body>| support::send(&world.router, request);
    let (status, problem) = send(device_payment(&key, "kiosk", "40", None)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    assert_eq!(problem["challenge"]["reasons"], json!(["new_device"]));
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        &world.router,
        &world.holder,
        &format!("/v1/challenges/{challenge}/approve"),
        json!({"code": world.code(1)}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = send(device_payment(&key, "kiosk", "40", Some(&challenge))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = send(device_payment(&key, "kiosk", "41", None)).await;
    assert_eq!(status, StatusCode::CREATED, "the device has paid before: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_lapses_with_its_challenge() {
    // Challenges that live 2 s instead of five minutes.
    let world = World::configured(|state| state.with_challenge_ttl_ns(2_000_000_000)).await;
    let short = world.router.clone();
    let body = json!({"id": "50", "debit_account_id": "1", "credit_account_id": "2", "amount": "5", "asset_code": "EUR", "asset_scale": 2});
    let (status, problem) = call(&short, &world.holder, "/v1/transfers", body.clone(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    let expires_ns: u64 = problem["challenge"]["expires_ns"].as_str().unwrap().parse().unwrap();
    let (status, answer) = call(
        &short,
        &world.holder,
        &format!("/v1/challenges/{challenge}/approve"),
        json!({"code": world.code(1)}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    while (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) <= expires_ns
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, problem) = call(&short, &world.holder, "/v1/transfers", body, Some(&challenge)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("requires_action")),
        "a lapsed approval is void"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_policy_asks_for_step_up_on_the_sixth_low_value_payment_and_approval_restarts_the_count() {
    use obol_risk::policy::{Bundle, Policy};
    let mut policy = Policy::new();
    policy.add(Bundle::compile(include_str!("../../../policy/eu-psd2-sca.toml")).unwrap()).unwrap();
    let world = World::configured(|state| state.with_risk(obol_app::risk::Risk::new(policy, None))).await;
    let no_new_payee = json!({"new_payee": false, "new_device": false});
    assert_eq!(world.set_step_up(no_new_payee).await, StatusCode::OK);
    for id in 20..25 {
        assert_eq!(world.pay(&id.to_string(), "2", "100", None).await.0, StatusCode::CREATED, "payment {id} is exempt");
    }
    let (status, problem) = world.pay("25", "2", "100", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
    let challenge = &problem["challenge"];
    assert_eq!(challenge["reasons"], json!(["risk_policy"]));
    assert!(challenge["risk"]["reason_en"].as_str().unwrap().contains("the sixth needs"), "{problem}");
    assert!(challenge["risk"].get("rule").is_none(), "the holder is told why, not which rule: {problem}");
    assert!(challenge["risk"]["reason_ko"].as_str().unwrap().contains("여섯 번째"));
    assert_eq!((challenge["amount"].as_str(), challenge["payees"].clone()), (Some("100"), json!(["2"])));
    let id = challenge["id"].as_str().unwrap().to_string();
    let (status, _) = world.approve(&id, json!({"code": world.code(1)})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.pay("25", "2", "101", Some(&id)).await.0, StatusCode::FORBIDDEN, "bound to the amount");
    assert_eq!(world.pay("25", "2", "100", Some(&id)).await.0, StatusCode::CREATED, "approved: through");
    assert_eq!(world.pay("26", "2", "100", None).await.0, StatusCode::CREATED, "the count restarted after SCA");
    let (status, problem) = world.pay("27", "2", "3001", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(problem["challenge"]["risk"]["reason_en"].as_str().unwrap().contains("over EUR 30"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_limit_needs_the_second_factor_and_lowering_it_does_not() {
    let world = World::new().await;
    let limit = |amount: Option<&str>| json!({"limit": amount});
    let monthly = "/v1/accounts/1/monthly-limit";
    // Setting a limit where there was none, and lowering it, protect more: no approval.
    let (status, set) = call(&world.router, &world.holder, monthly, limit(Some("5000")), None).await;
    assert_eq!((status, set["limit"].as_str()), (StatusCode::OK, Some("5000")), "{set}");
    assert_eq!(call(&world.router, &world.holder, monthly, limit(Some("4000")), None).await.0, StatusCode::OK);
    assert_eq!(call(&world.router, &world.holder, monthly, limit(Some("4000")), None).await.0, StatusCode::OK);
    // Raising or removing it, with the key alone, is refused with a challenge for exactly that.
    for loosened in [limit(Some("4001")), limit(None)] {
        let (status, problem) = call(&world.router, &world.holder, monthly, loosened, None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{problem}");
        assert_eq!(problem["challenge"]["change"], "monthly_limit");
    }
    let (_, problem) = call(&world.router, &world.holder, monthly, limit(Some("9000")), None).await;
    assert_eq!(problem["challenge"]["details"], "account=1;limit=9000", "the challenge says what it approves");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    assert_eq!(world.approve(&challenge, json!({"code": world.code(1)})).await.0, StatusCode::OK);
    // The approval covers that limit only, once.
    let (status, _) = call(&world.router, &world.holder, monthly, limit(Some("9001")), Some(&challenge)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, set) = call(&world.router, &world.holder, monthly, limit(Some("9000")), Some(&challenge)).await;
    assert_eq!((status, set["limit"].as_str()), (StatusCode::OK, Some("9000")), "{set}");
    let (status, _) = call(&world.router, &world.holder, monthly, limit(Some("9000")), Some(&challenge)).await;
    assert_eq!(status, StatusCode::OK, "the same limit again loosens nothing");
    let (status, _) = call(&world.router, &world.holder, monthly, limit(None), Some(&challenge)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a spent approval is void");
    // The operator needs none (it answers for the account, not the holder's factor).
    assert_eq!(call(&world.router, &world.operator, monthly, limit(None), None).await.0, StatusCode::OK);

    // A device's limits: the same rule per limit, and for the asset.
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "phone",
        "x": <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&signing.verifying_key().to_bytes())});
    let limits = |per_payment: &str, per_day: &str| json!({"limits": {"asset_code": "EUR", "asset_scale": 2, "per_payment": per_payment, "per_day": per_day}});
    let body = json!({"id": "55", "jwk": jwk, "limits": limits("500", "2000")["limits"]});
    let (status, device) = call(&world.router, &world.holder, "/v1/principals/100/devices", body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let path = "/v1/devices/55/limits";
    assert_eq!(call(&world.router, &world.holder, path, limits("400", "2000"), None).await.0, StatusCode::OK);
    for loosened in [limits("401", "2000"), limits("400", "0"), limits("400", "2001"), json!({"limits": null})] {
        let (status, problem) = call(&world.router, &world.holder, path, loosened.clone(), None).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("requires_action")), "{loosened}");
        assert_eq!(problem["challenge"]["change"], "device_limits");
    }
    let (_, problem) = call(&world.router, &world.holder, path, limits("800", "2000"), None).await;
    assert_eq!(problem["challenge"]["details"], "device=55;EUR/2 per_payment=800 per_day=2000");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    let recovery = world.recovery_codes[0].clone();
    assert_eq!(world.approve(&challenge, json!({"recovery_code": recovery})).await.0, StatusCode::OK);
    let (status, device) = call(&world.router, &world.holder, path, limits("800", "2000"), Some(&challenge)).await;
    assert_eq!((status, device["limits"]["per_payment"].as_str()), (StatusCode::OK, Some("800")), "{device}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_lowering_is_never_undone_by_a_racing_request_for_the_limit_it_replaced() {
    let world = World::new().await;
    let monthly = "/v1/accounts/1/monthly-limit";
    let mut limit: u64 = 100_000;
    let (status, _) = call(&world.router, &world.holder, monthly, json!({"limit": limit.to_string()}), None).await;
    assert_eq!(status, StatusCode::OK);
    // Twelve rounds: each refused resend leaves one challenge open, and a holder has at most 16.
    for _ in 0..12 {
        // The holder lowers the limit while a stolen key resends the one in force: the resend
        // either lands first (and the lowering after it) or is a raise that needs approval.
        let lowered = limit - 1;
        let holder = call(&world.router, &world.holder, monthly, json!({"limit": lowered.to_string()}), None);
        let thief = call(&world.router, &world.holder, monthly, json!({"limit": limit.to_string()}), None);
        let ((holder_status, _), (thief_status, thief_answer)) = tokio::join!(holder, thief);
        assert_eq!(holder_status, StatusCode::OK);
        assert!(
            thief_status == StatusCode::OK || thief_answer["code"] == "requires_action",
            "{thief_status} {thief_answer}"
        );
        let request = Request::get(monthly).header("authorization", format!("Bearer {}", world.holder));
        let (_, now) = support::send(&world.router, request.body(Body::empty()).unwrap()).await;
        assert_eq!(now["limit"], lowered.to_string(), "the lowering stands");
        limit = lowered;
    }
}
