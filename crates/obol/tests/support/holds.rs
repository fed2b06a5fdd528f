//! What the holds and step-up attack tests share: transfer bodies, device 55's `exact`
//! payments through the facilitator, and the holder's step-up policy with TOTP.

use serde_json::{Value, json};

use super::Parties as World;

pub fn transfer(id: &str, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

/// Balances of accounts 1 and 2.
pub async fn both(world: &World) -> ([u128; 4], [u128; 4]) {
    (world.balances("1").await, world.balances("2").await)
}

/// A facilitator body (verify or settle) for an `exact` payment of `amount` from account `from`
/// to `to` under transfer id `transfer`, signed by device `device_id` with `key`.
#[allow(clippy::too_many_arguments)] // one argument per field of the authorization
pub fn exact_with(
    world: &World,
    key: &ed25519_dalek::SigningKey,
    device_id: u128,
    transfer: u128,
    from: u128,
    to: u128,
    amount: u128,
    valid_before: u64,
) -> Value {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use ed25519_dalek::Signer;
    use obol_core::channel::ExactAuthorization;
    let authorization = ExactAuthorization {
        network: world.network,
        transfer_id: transfer,
        from,
        to,
        amount,
        asset: obol_core::money::Asset::new("USD", 2).unwrap(),
        device_id,
        valid_before_s: valid_before,
    };
    let signature = Base64UrlUnpadded::encode_string(&key.sign(&authorization.signed_message()).to_bytes());
    let requirements = json!({"scheme": "exact", "network": world.network_id, "amount": amount.to_string(),
        "asset": "USD", "payTo": to.to_string(), "maxTimeoutSeconds": 60, "extra": {"assetScale": 2}});
    json!({"x402Version": 2, "paymentRequirements": requirements.clone(), "paymentPayload": {
        "x402Version": 2, "accepted": requirements, "payload": {"from": from.to_string(),
        "device": device_id.to_string(), "transfer": transfer.to_string(), "validBefore": valid_before,
        "signature": signature}}})
}

pub fn later(seconds: u64) -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + seconds
}

/// Device 55's `exact` payment of `amount` from account 1 to account 2 under `transfer`.
pub fn exact(world: &World, transfer: u128, amount: u128) -> Value {
    exact_with(world, &world.device, 55, transfer, 1, 2, amount, later(600))
}

pub async fn settle(world: &World, body: &Value) -> Value {
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", body.clone(), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

pub async fn verify(world: &World, body: &Value) -> Value {
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/verify", body.clone(), None).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

pub fn refused(answer: &Value, reason: &str) {
    assert_eq!((answer["success"].as_bool(), answer["errorReason"].as_str()), (Some(false), Some(reason)), "{answer}");
}

pub fn invalid(answer: &Value, reason: &str) {
    assert_eq!(
        (answer["isValid"].as_bool(), answer["invalidReason"].as_str()),
        (Some(false), Some(reason)),
        "{answer}"
    );
}

/// Enrols and confirms TOTP for `principal` (with its `key`); answers its recovery codes.
pub async fn enrol(world: &World, principal: &str, key: &str) -> Vec<String> {
    let (status, enrolment) = world.api.post(key, &format!("/v1/principals/{principal}/totp"), json!({}), None).await;
    assert_eq!(status, 201, "{enrolment}");
    let seed =
        totp_rs::Secret::try_from_base32(enrolment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let code = totp_rs::Builder::new().with_secret(seed).build_noncompliant().generate(later(0)).to_string();
    let (status, codes) =
        world.api.post(key, &format!("/v1/principals/{principal}/totp/confirm"), json!({"code": code}), None).await;
    assert_eq!(status, 200, "{codes}");
    codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

/// The holder's step-up policy: above `above` USD minor units (if any), new payees, new devices;
/// set before its TOTP is confirmed (so it needs no approval), then TOTP; answers recovery codes.
pub async fn guard(world: &World, above: Option<&str>, new_payee: bool, new_device: bool) -> Vec<String> {
    let above = above.map(|amount| json!({"asset_code": "USD", "asset_scale": 2, "amount": amount}));
    let policy = json!({"above": above, "new_payee": new_payee, "new_device": new_device});
    let (status, answer) = world.api.post(&world.holder, "/v1/principals/100/step-up", policy, None).await;
    assert_eq!(status, 200, "{answer}");
    enrol(world, "100", &world.holder).await
}

/// The holder wants a second factor above USD 5.00.
pub async fn guard_above_5(world: &World) -> Vec<String> {
    guard(world, Some("500"), false, false).await
}

/// The holder approves challenge `id` with a recovery code.
pub async fn approve_challenge(world: &World, id: &str, recovery_code: &str) {
    let path = format!("/v1/challenges/{id}/approve");
    let (status, answer) = world.api.post(&world.holder, &path, json!({"recovery_code": recovery_code}), None).await;
    assert_eq!(status, 200, "{answer}");
}
