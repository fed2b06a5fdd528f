//! Goal: attack the version 2 payment formats (every signature names the server's network,
//! docs/vouchers.md) beyond what regression test r10_15 covers: genuine version 1 signatures on
//! every route (tab, batch, facilitator verify and settle), commitments naming no network or
//! malformed, version 1 records in an old log (they replay, and are never accepted anew), the
//! facilitator's verify and settle agreeing on every wrong network, and the places a signature
//! could cross deployments: a copied data directory (given its own `--instance-id`), embedded servers
//! (each a network of its own) and a wallet asked to sign for the network a merchant's offer names.
//! Method: the real `obol serve` binary (or, for the embedding case, the examples' in-process
//! sandbox) over real HTTP; every refusal asserts its status and problem code, and that no
//! balance and no tab moved.

use std::sync::{Arc, Mutex};

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, ExactAuthorization, Network, TabCommand, TabResult, Voucher, payword_chain};
use obol_core::ledger::OpResults;
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use serde_json::{Value, json};

mod support;
use support::{Api, Parties as World, code, launch};

const FUNDS: u128 = 5_000_000;
const DEVICE_SEED: [u8; 32] = [42; 32];

async fn world(tag: &str) -> World {
    World::start(&format!("net-{tag}"), 9, FUNDS, None).await
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn usd9() -> Asset {
    Asset::new("USD", 9).unwrap()
}

/// The 72 bytes a version 1 voucher signed (domain "obol voucher v1\0", no network).
fn v1_voucher_message(tab: u128, payee: u128, cumulative: u128, seq: u64) -> Vec<u8> {
    let mut message = b"obol voucher v1\0".to_vec();
    message.extend_from_slice(&tab.to_le_bytes());
    message.extend_from_slice(&payee.to_le_bytes());
    message.extend_from_slice(&cumulative.to_le_bytes());
    message.extend_from_slice(&seq.to_le_bytes());
    assert_eq!(message.len(), 72);
    message
}

/// A genuine version 1 voucher of `key` (a signature an old server accepted), in its
/// binary form with magic `magic` (OBV1 as it was sent, or relabelled OBV2).
fn v1_voucher(key: &SigningKey, tab: u128, cumulative: u128, seq: u64, magic: &[u8; 4]) -> Vec<u8> {
    let signature = key.sign(&v1_voucher_message(tab, 2, cumulative, seq)).to_bytes();
    let mut bytes = Voucher { tab_id: tab, payee_id: 2, cumulative, seq, signature }.encode().to_vec();
    bytes[..4].copy_from_slice(magic);
    bytes
}

/// A version 2 voucher of `key` signed for `network`.
/// A version 1 commitment (no network) to tab `tab` paying account 2, ticks of 10, as servers
/// before version 2 accepted it.
fn v1_commitment(key: &SigningKey, tab: u128, chain: &[[u8; 32]]) -> Commitment {
    let length = (chain.len() - 1) as u32;
    let message = Commitment::signed_message(&Network::UNBOUND, tab, 2, &chain[0], length, 10);
    let signature = key.sign(&message).to_bytes();
    Commitment {
        tab_id: tab,
        payee_id: 2,
        network: Network::UNBOUND,
        root: chain[0],
        length,
        value_per_tick: 10,
        signature,
    }
}

fn v2_voucher(key: &SigningKey, network: &Network, tab: u128, cumulative: u128, seq: u64) -> Vec<u8> {
    let signature = key.sign(&Voucher::signed_message(network, tab, 2, cumulative, seq)).to_bytes();
    Voucher { tab_id: tab, payee_id: 2, cumulative, seq, signature }.encode().to_vec()
}

/// The 112 bytes a version 1 `exact` authorization signed (no network).
fn v1_exact_message(transfer: u128, from: u128, to: u128, amount: u128, device: u128, valid_before: u64) -> Vec<u8> {
    let mut message = b"obol exact v1\0\0\0".to_vec();
    for field in [transfer, from, to, amount] {
        message.extend_from_slice(&field.to_le_bytes());
    }
    message.extend_from_slice(&usd9().to_bytes());
    message.extend_from_slice(&[0; 4]);
    message.extend_from_slice(&device.to_le_bytes());
    message.extend_from_slice(&valid_before.to_le_bytes());
    assert_eq!(message.len(), 112);
    message
}

/// An `exact` authorization of device 55 paying 100 from account 1 to 2, signed for `network`.
fn exact_signature(key: &SigningKey, network: Network, transfer: u128, valid_before: u64) -> String {
    let authorization = ExactAuthorization {
        network,
        transfer_id: transfer,
        from: 1,
        to: 2,
        amount: 100,
        asset: usd9(),
        device_id: 55,
        valid_before_s: valid_before,
    };
    b64(&key.sign(&authorization.signed_message()).to_bytes())
}

fn requirements(scheme: &str, network: &str) -> Value {
    json!({"scheme": scheme, "network": network, "amount": "100", "asset": "USD", "payTo": "2",
        "maxTimeoutSeconds": 60, "extra": {"assetScale": 9}})
}

fn facilitator(requirements: Value, payload: Value) -> Value {
    json!({"x402Version": 2, "paymentRequirements": requirements.clone(),
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload}})
}

fn exact_payload(transfer: u128, valid_before: u64, signature: String) -> Value {
    json!({"from": "1", "device": "55", "transfer": transfer.to_string(), "validBefore": valid_before,
        "signature": signature})
}

/// Sends `request` to `/v1/x402/verify` and `/v1/x402/settle` as the merchant; both must refuse
/// with `reason` (the verify answer must never say valid where settle refuses).
async fn both_refuse(world: &World, request: Value, reason: &str, case: &str) {
    let (status, verdict) = world.api.post(&world.merchant, "/v1/x402/verify", request.clone(), None).await;
    assert_eq!((status, verdict["isValid"].as_bool()), (200, Some(false)), "{case}: verify {verdict}");
    assert_eq!(verdict["invalidReason"], reason, "{case}: verify {verdict}");
    let (status, receipt) = world.api.post(&world.merchant, "/v1/x402/settle", request, None).await;
    assert_eq!((status, receipt["success"].as_bool()), (200, Some(false)), "{case}: settle {receipt}");
    assert_eq!(receipt["errorReason"], reason, "{case}: settle {receipt}");
}

async fn tab(world: &World, id: &str) -> Value {
    let (status, tab) = world.api.get(&world.operator, &format!("/v1/tabs/{id}")).await;
    assert_eq!(status, 200, "{tab}");
    tab
}

async fn money(world: &World) -> ([u128; 4], [u128; 4]) {
    (world.balances("1").await, world.balances("2").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n01_a_genuine_v1_voucher_is_refused_on_every_route() {
    let world = world("v1voucher").await;
    assert_eq!(world.open_tab("7", 1_000, "55").await.0, 201);
    let before = money(&world).await;
    let network_id = world.network_id.clone();
    // What an old payer really signed (no network), as sent (OBV1) and relabelled as OBV2.
    let v1 = b64(&v1_voucher(&world.device, 7, 300, 1, b"OBV1"));
    let relabelled = b64(&v1_voucher(&world.device, 7, 300, 1, b"OBV2"));

    // POST /v1/tabs/{id}/vouchers
    let (status, problem) = world.api.post(&world.merchant, "/v1/tabs/7/vouchers", json!({"voucher": v1}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/tabs/7/vouchers", json!({"voucher": relabelled}), None).await;
    assert_eq!((status, code(&problem)), (422, "voucher_signature_invalid"), "{problem}");
    // The operator (who may submit for any payee) is refused alike.
    let (status, problem) = world.api.post(&world.operator, "/v1/tabs/7/vouchers", json!({"voucher": v1}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    // A v1 magic at the wrong length is malformed, not a panic.
    let short = b64(&v1_voucher(&world.device, 7, 300, 1, b"OBV1")[..123]);
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/tabs/7/vouchers", json!({"voucher": short}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");

    // POST /v1/vouchers (a batch of two, so the batch equation runs and fails).
    let batch = json!({"vouchers": [v1, relabelled, relabelled]});
    let (status, answer) = world.api.post(&world.merchant, "/v1/vouchers", batch, None).await;
    assert_eq!(status, 200, "{answer}");
    let errors: Vec<&str> =
        answer["results"].as_array().unwrap().iter().map(|r| r["error"].as_str().unwrap_or("none")).collect();
    assert_eq!(errors, ["invalid_network", "voucher_signature_invalid", "voucher_signature_invalid"], "{answer}");
    assert!(answer["results"].as_array().unwrap().iter().all(|r| r["paid"] == "0"), "{answer}");

    // /v1/x402/verify and /v1/x402/settle, scheme obol-voucher.
    let offer = requirements("obol-voucher", &network_id);
    both_refuse(&world, facilitator(offer.clone(), json!({"voucher": v1})), "invalid_network", "OBV1").await;
    both_refuse(
        &world,
        facilitator(offer.clone(), json!({"voucher": relabelled})),
        "voucher_signature_invalid",
        "OBV1 as OBV2",
    )
    .await;

    // The harness is right: a v2 voucher for this network verifies (and is not settled here).
    let good = b64(&v2_voucher(&world.device, &world.network, 7, 300, 1));
    let (_, verdict) =
        world.api.post(&world.merchant, "/v1/x402/verify", facilitator(offer, json!({"voucher": good})), None).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");

    let tab = tab(&world, "7").await;
    assert_eq!(tab["cumulative"], "0", "{tab}");
    assert_eq!(money(&world).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n02_v1_foreign_and_malformed_commitments_are_refused_and_a_good_one_survives_restart() {
    let mut world = world("commit").await;
    assert_eq!(world.open_tab("8", 1_000, "55").await.0, 201);
    let before = money(&world).await;
    let chain = payword_chain([6; 32], 10);
    let post = |body: Value| {
        let api = &world.api;
        let merchant = world.merchant.clone();
        async move { api.post(&merchant, "/v1/tabs/8/commitment", body, None).await }
    };

    // A genuine version 1 commitment (OBP1, 152 bytes): the ledger would verify it (v1 domain),
    // so it must be stopped at the API.
    let v1 = world.commitment(Network::UNBOUND, 8, &chain, 10);
    let v1_bytes = v1.encode();
    assert_eq!((&v1_bytes[..4], v1_bytes.len()), (&b"OBP1"[..], 152));
    let (status, problem) = post(json!({"commitment": b64(&v1_bytes)})).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    // The same v1 signature relabelled with this server's network does not verify.
    let relabelled = Commitment { network: world.network, ..v1 };
    let (status, problem) = post(json!({"commitment": b64(&relabelled.encode())})).await;
    assert_eq!((status, code(&problem)), (422, "voucher_signature_invalid"), "{problem}");
    // Signed for another server's network.
    let elsewhere = world.commitment(Network::named("obol:elsewhere"), 8, &chain, 10);
    let (status, problem) = post(json!({"commitment": b64(&elsewhere.encode())})).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");

    // Malformed: every length and magic mix-up is a 400, never a panic or a 5xx.
    let good = world.commitment(world.network, 8, &chain, 10).encode();
    assert_eq!(good.len(), 184);
    let mut v2_magic_v1_length = good[..152].to_vec();
    v2_magic_v1_length[..4].copy_from_slice(b"OBP2");
    let mut v1_magic_v2_length = good.clone();
    v1_magic_v2_length[..4].copy_from_slice(b"OBP1");
    let mut unknown_magic = good.clone();
    unknown_magic[..4].copy_from_slice(b"OBP3");
    let mut longer = good.clone();
    longer.push(0);
    let mut v1_longer = v1_bytes.clone();
    v1_longer.push(0);
    for (case, bytes) in [
        ("truncated", good[..183].to_vec()),
        ("one byte more", longer),
        ("OBP2 at 152 bytes", v2_magic_v1_length),
        ("OBP1 at 184 bytes", v1_magic_v2_length),
        ("OBP1 at 153 bytes", v1_longer),
        ("OBP3", unknown_magic),
        ("three bytes", b"OBP".to_vec()),
        ("empty", Vec::new()),
    ] {
        let (status, problem) = post(json!({"commitment": b64(&bytes)})).await;
        assert_eq!((status, code(&problem)), (400, "invalid_field"), "{case}: {problem}");
    }
    let tab8 = tab(&world, "8").await;
    assert_eq!((tab8["payword_length"].as_u64(), tab8["cumulative"].as_str()), (None, Some("0")), "{tab8}");
    assert_eq!(money(&world).await, before);

    // The good commitment is taken, ticks pay, and it replays after SIGKILL (the ledger checks
    // its signature again on replay, against the network it carries).
    let (status, answer) = post(json!({"commitment": b64(&good)})).await;
    assert_eq!((status, answer["payword_length"].as_u64()), (200, Some(10)), "{answer}");
    let tick = |index: u32| json!({"index": index, "word": chain[index as usize].iter().map(|b| format!("{b:02x}")).collect::<String>()});
    let (status, answer) = world.api.post(&world.merchant, "/v1/tabs/8/ticks", tick(1), None).await;
    assert_eq!((status, answer["paid"].as_str()), (200, Some("10")), "{answer}");
    world.kill_and_restart().await;
    let tab8 = tab(&world, "8").await;
    assert_eq!((tab8["payword_length"].as_u64(), tab8["cumulative"].as_str()), (Some(10), Some("10")), "{tab8}");
    let (status, answer) = world.api.post(&world.merchant, "/v1/tabs/8/ticks", tick(3), None).await;
    assert_eq!((status, answer["paid"].as_str()), (200, Some("20")), "{answer}");
    // After the restart the v1 commitment is still refused as such (not merely as stale).
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/tabs/8/commitment", json!({"commitment": b64(&v1_bytes)}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    assert_eq!(money(&world).await, before, "ticks move money only when the tab settles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n03_an_obp2_commitment_naming_no_network_is_refused_as_invalid_network() {
    let world = world("zeros").await;
    assert_eq!(world.open_tab("8", 1_000, "55").await.0, 201);
    let before = money(&world).await;
    let chain = payword_chain([6; 32], 10);
    // Version 2's magic and layout with the network field all zeros (what UNBOUND means), signed
    // as version 1 signs: the ledger would verify it as v1 if it ever reached it.
    let v1 = world.commitment(Network::UNBOUND, 8, &chain, 10).encode();
    let mut zeros = b"OBP2".to_vec();
    zeros.extend_from_slice(&[0; 32]);
    zeros.extend_from_slice(&v1[4..]);
    assert_eq!(zeros.len(), 184);
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/tabs/8/commitment", json!({"commitment": b64(&zeros)}), None).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(tab(&world, "8").await["payword_length"], Value::Null);
    assert_eq!(money(&world).await, before);
    // docs/vouchers.md: a commitment for another network, or none, is `invalid_network` (as a
    // v1 voucher is, and as an OBP1 commitment is); here the detail even says "format version 1
    // names no network" under another code.
    assert_eq!(code(&problem), "invalid_network", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n04_facilitator_verify_and_settle_agree_on_every_wrong_network() {
    let world = world("facilitator").await;
    assert_eq!(world.open_tab("7", 1_000, "55").await.0, 201);
    let before = money(&world).await;
    let here = world.network_id.clone();
    let staging = "obol:staging";
    let valid_before = now_s() + 600;
    let key = &world.device;

    // Requirements naming another network, the payment signed for it.
    for (transfer, network) in [
        (101u128, staging.to_string()),
        (102, here.to_uppercase()),
        (103, format!("{here} ")),
        (104, here.replacen("obol:", "obol: ", 1)),
    ] {
        let signature = exact_signature(key, Network::named(&network), transfer, valid_before);
        let request = facilitator(requirements("exact", &network), exact_payload(transfer, valid_before, signature));
        both_refuse(&world, request, "invalid_network", &format!("requirements on {network:?}")).await;
    }
    // Requirements on this network; the authorization signed for another, for none (zeros),
    // or as version 1 (112 bytes, no network).
    let offer = requirements("exact", &here);
    let signed_elsewhere = exact_signature(key, Network::named(staging), 110, valid_before);
    let signed_unbound = exact_signature(key, Network::UNBOUND, 111, valid_before);
    let signed_v1 = b64(&key.sign(&v1_exact_message(112, 1, 2, 100, 55, valid_before)).to_bytes());
    for (transfer, signature, case) in [
        (110u128, signed_elsewhere, "signed for staging"),
        (111, signed_unbound, "signed for zeros"),
        (112, signed_v1, "v1 message"),
    ] {
        let request = facilitator(offer.clone(), exact_payload(transfer, valid_before, signature));
        both_refuse(&world, request, "signature_invalid", case).await;
    }
    // Vouchers signed for another network, on this network's requirements and on staging's.
    let foreign = b64(&v2_voucher(key, &Network::named(staging), 7, 300, 1));
    let request = facilitator(requirements("obol-voucher", &here), json!({"voucher": foreign}));
    both_refuse(&world, request, "voucher_signature_invalid", "voucher for staging").await;
    let request = facilitator(requirements("obol-voucher", staging), json!({"voucher": foreign}));
    both_refuse(&world, request, "invalid_network", "voucher on staging's requirements").await;
    // The client's `accepted` naming another network than the requirements it sends.
    let mut request = facilitator(
        requirements("exact", &here),
        exact_payload(113, valid_before, exact_signature(key, world.network, 113, valid_before)),
    );
    request["paymentPayload"]["accepted"]["network"] = json!(staging);
    both_refuse(&world, request, "invalid_payment_requirements", "accepted on staging").await;

    // The harness is right: the same authorization signed for this network verifies.
    let good =
        facilitator(offer, exact_payload(120, valid_before, exact_signature(key, world.network, 120, valid_before)));
    let (_, verdict) = world.api.post(&world.merchant, "/v1/x402/verify", good, None).await;
    assert_eq!(verdict["isValid"], true, "{verdict}");

    for transfer in [101, 102, 103, 104, 110, 111, 112, 113, 120] {
        let (status, _) = world.api.get(&world.operator, &format!("/v1/transfers/{transfer}")).await;
        assert_eq!(status, 404, "transfer {transfer} exists");
    }
    assert_eq!(tab(&world, "7").await["cumulative"], "0");
    assert_eq!(money(&world).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n05_a_batch_mixing_networks_pays_only_what_was_signed_for_this_server() {
    let world = world("batch").await;
    for id in ["7", "8", "9"] {
        assert_eq!(world.open_tab(id, 1_000, "55").await.0, 201);
    }
    let before = money(&world).await;
    let key = &world.device;
    let elsewhere = Network::named("obol:elsewhere");
    let batch = json!({"vouchers": [
        b64(&v2_voucher(key, &world.network, 7, 100, 1)),
        b64(&v2_voucher(key, &elsewhere, 8, 100, 1)),
        b64(&v1_voucher(key, 9, 100, 1, b"OBV1")),
        b64(&v2_voucher(key, &Network::UNBOUND, 9, 100, 1)),
        b64(&v2_voucher(key, &elsewhere, 9, 200, 2)),
    ]});
    let (status, answer) = world.api.post(&world.merchant, "/v1/vouchers", batch, None).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let summary: Vec<(&str, &str)> =
        results.iter().map(|r| (r["paid"].as_str().unwrap(), r["error"].as_str().unwrap_or("none"))).collect();
    assert_eq!(
        summary,
        [
            ("100", "none"),
            ("0", "voucher_signature_invalid"),
            ("0", "invalid_network"),
            ("0", "voucher_signature_invalid"),
            ("0", "voucher_signature_invalid"),
        ],
        "{answer}"
    );
    for id in ["8", "9"] {
        assert_eq!(tab(&world, id).await["cumulative"], "0");
        let (status, _) = world.api.post(&world.merchant, &format!("/v1/tabs/{id}/settle"), json!({}), None).await;
        assert_eq!(status, 200);
    }
    // Settling the attacked tabs paid the merchant nothing and released their escrows.
    let after = money(&world).await;
    assert_eq!(after.1[3], before.1[3], "the merchant was paid by a foreign voucher");
    assert_eq!(after.0[1], before.0[1], "the payer paid for a foreign voucher");
}

// ---------------------------------------------------------------------------------------------
// Servers this file starts itself (to stop, copy or edit their data directories).

struct Server {
    child: std::process::Child,
    api: Api,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data: &std::path::Path, extra: &[&str]) -> (Server, Option<String>) {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            std::ffi::OsStr::new("--listen"),
            std::ffi::OsStr::new("127.0.0.1:0"),
            std::ffi::OsStr::new("--data-dir"),
            data.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let launched = launch(args);
        let api = Api::new(&launched.base);
        (Server { child: launched.child, api }, launched.key)
    }

    fn stop(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    async fn network(&self, key: &str) -> Network {
        let (_, supported) = self.api.get(key, "/v1/x402/supported").await;
        Network::named(supported["kinds"][0]["network"].as_str().unwrap())
    }

    async fn op(&self, key: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.api.post(key, path, body, None).await;
        assert!((200..300).contains(&status), "{path}: {status} {value}");
        value
    }

    /// Holder 100 (account 1, device 55), merchant 300 (account 2), platform 9, and tabs.
    async fn parties(&self, key: &str, tabs: &[&str]) -> String {
        self.api.ready().await;
        self.op(key, "/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
        self.op(key, "/v1/principals", json!({"id": "300", "role": "merchant", "name": "Shop"})).await;
        let merchant = self.op(key, "/v1/principals/300/keys", json!({})).await["key"].as_str().unwrap().to_string();
        self.op(key, "/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": 9})).await;
        self.op(key, "/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": 9, "owner_id": "100"}))
            .await;
        self.op(key, "/v1/accounts", json!({"id": "2", "asset_code": "USD", "asset_scale": 9, "owner_id": "300"}))
            .await;
        self.op(
            key,
            "/v1/transfers",
            json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1",
            "amount": FUNDS.to_string(), "asset_code": "USD", "asset_scale": 9}),
        )
        .await;
        let jwk = obol_client::Wallet::device_jwk(&DEVICE_SEED, "reader");
        self.op(key, "/v1/principals/100/devices", json!({"id": "55", "jwk": jwk})).await;
        for id in tabs {
            self.op(
                key,
                "/v1/tabs",
                json!({"id": id, "payer_account_id": "1", "payee_account_id": "2",
                "budget": "1000", "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "55"}),
            )
            .await;
        }
        merchant
    }

    async fn tab(&self, key: &str, id: &str) -> Value {
        let (status, tab) = self.api.get(key, &format!("/v1/tabs/{id}")).await;
        assert_eq!(status, 200, "{tab}");
        tab
    }

    async fn balances(&self, key: &str, account: &str) -> Value {
        self.api.get(key, &format!("/v1/accounts/{account}/balance")).await.1
    }
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("obol-net-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CRC-32 (IEEE), as the record header carries.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n06_v1_records_in_an_old_log_replay_but_v1_is_never_accepted_anew() {
    use obol_store::{Node, SqliteStore, Store};
    let dir = scratch("oldlog");
    let data = dir.join("data");
    let (server, key) = Server::start(&data, &[]);
    let operator = key.expect("a fresh store prints the operator key");
    let merchant = server.parties(&operator, &["7", "8", "9"]).await;
    server.stop();
    let device = SigningKey::from_bytes(&DEVICE_SEED);
    let chain = payword_chain([9; 32], 10);

    // Write what a server before version 2 wrote: an OBV1 voucher record, then an OBP1
    // commitment record.
    {
        let mut node = Node::open(SqliteStore::open(&data).unwrap(), 1).unwrap();
        let seq = node.seq_last() + 1;
        let signature = device.sign(&v1_voucher_message(7, 2, 300, 1)).to_bytes();
        let voucher = Voucher { tab_id: 7, payee_id: 2, cumulative: 300, seq: 1, signature };
        let mut bytes =
            Record { now_ns: wall_ns(), ops: vec![Op::Tab(TabCommand::Voucher(voucher))] }.encode().unwrap();
        assert_eq!(crc32(&bytes[16..]).to_le_bytes(), bytes[4..8], "the CRC here is the record's");
        let at = bytes.windows(4).position(|w| w == b"OBV2").expect("the voucher's magic");
        bytes[at..at + 4].copy_from_slice(b"OBV1");
        let crc = crc32(&bytes[16..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        node.store_mut().append(seq, &bytes).unwrap();
    }
    {
        let mut node = Node::open(SqliteStore::open(&data).unwrap(), 1).unwrap();
        let cumulative = node.ledger().read().unwrap().tab(7).unwrap().tab.cumulative;
        assert_eq!(cumulative, 300, "the OBV1 record decodes and applies");
        let commitment = v1_commitment(&device, 8, &chain);
        let record = Record { now_ns: wall_ns(), ops: vec![Op::Tab(TabCommand::Commit(commitment))] };
        assert!(record.encode().unwrap().windows(4).any(|w| w == b"OBP1"), "written as version 1 was");
        let results = node.commit(&record).unwrap();
        assert!(matches!(results[..], [OpResults::Tab(TabResult::Ok { .. })]), "{results:?}");
    }

    // The upgraded server replays both, and ticks keep paying on the old chain.
    let (server, _) = Server::start(&data, &[]);
    server.api.ready().await;
    let before = (server.balances(&operator, "1").await, server.balances(&operator, "2").await);
    assert_eq!(server.tab(&operator, "7").await["cumulative"], "300");
    assert_eq!(server.tab(&operator, "8").await["payword_length"], 10);
    let word = |i: usize| chain[i].iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (status, answer) =
        server.api.post(&merchant, "/v1/tabs/8/ticks", json!({"index": 1, "word": word(1)}), None).await;
    assert_eq!((status, answer["paid"].as_str()), (200, Some("10")), "{answer}");

    // Neither is accepted anew: a v1 commitment for tab 9, the next v1 voucher of tab 7.
    let v1_commitment = v1_commitment(&device, 9, &chain);
    let (status, problem) = server
        .api
        .post(&merchant, "/v1/tabs/9/commitment", json!({"commitment": b64(&v1_commitment.encode())}), None)
        .await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    let v1_next = b64(&v1_voucher(&device, 7, 400, 2, b"OBV1"));
    let (status, problem) = server.api.post(&merchant, "/v1/tabs/7/vouchers", json!({"voucher": v1_next}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    let batch = json!({"vouchers": [v1_next]});
    let (_, answer) = server.api.post(&merchant, "/v1/vouchers", batch, None).await;
    assert_eq!(answer["results"][0]["error"], "invalid_network", "{answer}");
    assert_eq!(server.tab(&operator, "9").await["payword_length"], Value::Null);
    // Version 2 continues the old tab.
    let network = server.network(&operator).await;
    let next = b64(&v2_voucher(&device, &network, 7, 400, 2));
    let (status, answer) = server.api.post(&merchant, "/v1/tabs/7/vouchers", json!({"voucher": next}), None).await;
    assert_eq!((status, answer["paid"].as_str()), (200, Some("100")), "{answer}");
    server.stop();

    // And the whole log, old records and new, replays again to the same state.
    let (server, _) = Server::start(&data, &[]);
    server.api.ready().await;
    assert_eq!(server.tab(&operator, "7").await["cumulative"], "400");
    assert_eq!(server.tab(&operator, "8").await["cumulative"], "10");
    assert_eq!(server.tab(&operator, "9").await["cumulative"], "0");
    assert_eq!((server.balances(&operator, "1").await, server.balances(&operator, "2").await), before);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n07_a_copy_of_a_data_directory_given_its_own_instance_id_is_another_network() {
    // Staging made from a copy of production's data directory: the same ids, the same device
    // key (the very case docs/vouchers.md names), and, since the instance id lives in the
    // store, the same network.
    let dir = scratch("copy");
    let production_data = dir.join("production");
    let (production, key) = Server::start(&production_data, &[]);
    let operator = key.expect("operator key");
    let merchant = production.parties(&operator, &["7"]).await;
    production.stop();
    let staging_data = dir.join("staging");
    std::fs::create_dir_all(&staging_data).unwrap();
    for entry in std::fs::read_dir(&production_data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" && entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), staging_data.join(entry.file_name())).unwrap();
        }
    }
    let (production, _) = Server::start(&production_data, &[]);
    // As docs/vouchers.md says, a copy is the same network until it is given its own.
    let (copy, _) = Server::start(&staging_data, &[]);
    copy.api.ready().await;
    production.api.ready().await;
    assert_eq!(copy.network(&operator).await, production.network(&operator).await);
    copy.stop();
    let (staging, _) = Server::start(&staging_data, &["--instance-id", "staging"]);
    staging.api.ready().await;
    let (_, supported) = staging.api.get(&operator, "/v1/x402/supported").await;
    assert_eq!(supported["kinds"][0]["network"], "obol:staging", "{supported}");
    let before = (production.balances(&operator, "1").await, production.balances(&operator, "2").await);

    // A voucher the payer gives staging's merchant ...
    let device = SigningKey::from_bytes(&DEVICE_SEED);
    let for_staging = b64(&v2_voucher(&device, &staging.network(&operator).await, 7, 900, 1));
    let (status, _) = staging.api.post(&merchant, "/v1/tabs/7/vouchers", json!({"voucher": for_staging}), None).await;
    assert_eq!(status, 200);
    // ... must pay nothing on production.
    let (status, answer) =
        production.api.post(&merchant, "/v1/tabs/7/vouchers", json!({"voucher": for_staging}), None).await;
    let cumulative = production.tab(&operator, "7").await["cumulative"].clone();
    assert_eq!((production.balances(&operator, "1").await, production.balances(&operator, "2").await), before);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (status, code(&answer), cumulative.as_str()),
        (422, "voucher_signature_invalid", Some("0")),
        "HOLE: staging's voucher paid on production (both are network {:?}): {answer}",
        production.api.get(&operator, "/v1/x402/supported").await.1["kinds"][0]["network"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n08_a_wallet_signs_exact_only_for_its_own_servers_network() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    // The payer's wallet keeps its account on `home`; `production` has the same ids and device
    // key. A merchant's 402 offer names production's network.
    let home = world("wallet-home").await;
    let production = world("wallet-prod").await;
    let production_id = production.network_id.clone();
    let before = money(&production).await;
    let offer = json!({"x402Version": 2, "resource": {"url": "http://merchant.example/item"},
        "accepts": [requirements("exact", &production_id)]});
    let offered = obol_http::x402::encode_header(&offer);
    let captured: Arc<Mutex<Option<String>>> = Arc::default();
    let sink = captured.clone();
    let app = axum::Router::new().route(
        "/item",
        axum::routing::get(move |headers: HeaderMap| {
            let offered = offered.clone();
            let sink = sink.clone();
            async move {
                match headers.get("payment-signature").and_then(|v| v.to_str().ok()) {
                    Some(paid) => {
                        *sink.lock().unwrap() = Some(paid.to_string());
                        (StatusCode::OK, "an item").into_response()
                    }
                    None => (StatusCode::PAYMENT_REQUIRED, [("payment-required", offered)], "{}").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let wallet = obol_client::Wallet::new(obol_client::WalletConfig {
        server: home.api.base.clone(),
        device_key: DEVICE_SEED,
        kid: "reader".into(),
        device_id: 55,
        account_id: 1,
        asset: usd9(),
        auto_tab_budget: 0,
        auto_tab_timeout_s: 600,
        limits: obol_client::SpendLimits::default(),
        preference: obol_client::Preference::Exact,
    })
    .unwrap();
    let paid = wallet.get(&format!("http://{address}/item")).await;
    let header = captured.lock().unwrap().clone();
    let Some(header) = header else {
        // The wallet refused to sign for a network other than its server's: what it should do.
        assert!(paid.is_err(), "{paid:?}");
        return;
    };
    // The merchant takes the authorization to production's facilitator.
    let payment: Value = obol_http::x402::decode_header(&header).unwrap();
    let request = json!({"x402Version": 2, "paymentRequirements": payment["accepted"].clone(),
        "paymentPayload": payment});
    let (status, receipt) = production.api.post(&production.merchant, "/v1/x402/settle", request, None).await;
    let after = money(&production).await;
    assert_eq!(
        (status, receipt["success"].as_bool(), after),
        (200, Some(false), before),
        "HOLE: a wallet whose server is {} signed `exact` for the offer's network {production_id} and \
         production paid it: {receipt}",
        home.api.base
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n09_two_embedded_servers_are_not_one_network() {
    use axum::routing::get;
    use obol_examples::{Sandbox, usd};
    use obol_http::x402::{PaymentRequired, Price, decode_header};
    const PRICE: u128 = 4_000;
    const SEED: [u8; 32] = [0x31; 32];
    // Two deployments of the README's embedding (obol_http::app + PaymentLayer), set up alike.
    let mut sandboxes = Vec::new();
    for name in ["embed-a", "embed-b"] {
        let sandbox = Sandbox::start(name, |seller| {
            let price = Price::new(PRICE, usd(), 2_000, "A priced page");
            axum::Router::new().route("/page", get(|| async { "a priced page" }).layer(seller.layer(price)))
        })
        .await
        .unwrap();
        sandbox.merchant(200, "Merchant", 2_000).await.unwrap();
        sandbox.payer_with_key(100, "Payer", 1_000, 1_000_000, SEED).await.unwrap();
        sandboxes.push(sandbox);
    }
    let (a, b) = (&sandboxes[0], &sandboxes[1]);
    let http = obol_client::http_client(None).unwrap();
    let network_of = |base: String| {
        let http = http.clone();
        async move {
            let supported: Value =
                http.get(format!("{base}/v1/x402/supported")).send().await.unwrap().json().await.unwrap();
            supported["kinds"][0]["network"].as_str().unwrap().to_string()
        }
    };
    let a_id = network_of(a.base.clone()).await;
    // B's offer for its page.
    let unpaid = http.get(format!("{}/page", b.base)).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let offer: PaymentRequired =
        decode_header(unpaid.headers().get("payment-required").unwrap().to_str().unwrap()).unwrap();
    let exact = offer.accepts.iter().find(|o| o.scheme == "exact").unwrap().clone();
    // An authorization the payer signed for A.
    let valid_before = now_s() + 60;
    let authorization = ExactAuthorization {
        network: Network::named(&a_id),
        transfer_id: 77,
        from: 1_000,
        to: 2_000,
        amount: PRICE,
        asset: usd(),
        device_id: 1_000,
        valid_before_s: valid_before,
    };
    let signature = b64(&SigningKey::from_bytes(&SEED).sign(&authorization.signed_message()).to_bytes());
    let payment = json!({"x402Version": 2, "accepted": exact, "payload": {"from": "1000", "device": "1000",
        "transfer": "77", "validBefore": valid_before, "signature": signature}});
    let header = obol_http::x402::encode_header(&payment);
    let before = b.balances(1_000).await.unwrap();
    let replayed = http.get(format!("{}/page", b.base)).header("payment-signature", header).send().await.unwrap();
    let status = replayed.status().as_u16();
    let after = b.balances(1_000).await.unwrap();
    assert_eq!(
        (status, after),
        (402, before),
        "HOLE: an authorization signed for A ({a_id}) paid B's priced route; both embedded servers are {}",
        exact.network
    );
}
