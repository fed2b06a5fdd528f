//! Goal: attack the list routes (`GET /v1/accounts`, `/v1/transfers`, `/v1/tabs`,
//! `/v1/principals`) from outside. Holders and merchants must see only their own accounts, the
//! transfers touching them and the tabs they are party to, whatever filter, cursor or limit they
//! send; principals are listed only to the operator, analysts and auditors; bad input is a 400
//! `invalid_query` problem, never a 5xx; paging to the end visits every entry exactly once, while
//! transfers are appended and across a kill -9 of the server.
//! Method: the real `obol serve` over HTTP, with two holders (Alice 100 and Bob 200), a merchant
//! (300), an analyst (400) and an auditor (500), accounts, transfers (posted, pending, voided) and
//! a tab of each holder.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{Api, Parties as World, code};

const FUNDS: u128 = 1_000_000;

/// Keys of every role, and Bob's (a second holder).
struct Keys {
    alice: String,
    bob: String,
    merchant: String,
    analyst: String,
    auditor: String,
}

fn usd(id: &str, owner: &str) -> Value {
    json!({"id": id, "asset_code": "USD", "asset_scale": 2, "owner_id": owner})
}

fn transfer(id: &str, from: &str, to: &str, amount: u128) -> Value {
    json!({"id": id, "debit_account_id": from, "credit_account_id": to, "amount": amount.to_string(),
        "asset_code": "USD", "asset_scale": 2})
}

/// The world: Alice (100) owns 1 and 11; Bob (200) owns 21 (USD) and 22 (EUR); the merchant (300)
/// owns 2; 9 is the platform's. Transfers: funding, payments of each holder to the merchant, one
/// between the holders' own accounts, a pending one of Bob (voided) and one of Alice (still
/// pending). Alice has tab 7001 and Bob tab 7002, both paying account 2.
async fn world(tag: &str) -> (World, Keys) {
    let world = World::start(&format!("listsx-{tag}"), 2, FUNDS, None).await;
    world.op("/v1/principals", json!({"id": "200", "role": "holder", "name": "Bob"})).await;
    world.op("/v1/principals", json!({"id": "400", "role": "analyst", "name": "Ann"})).await;
    world.op("/v1/principals", json!({"id": "500", "role": "auditor", "name": "Aud"})).await;
    let key = |v: Value| v["key"].as_str().expect("key").to_string();
    let bob = key(world.op("/v1/principals/200/keys", json!({})).await);
    let analyst = key(world.op("/v1/principals/400/keys", json!({})).await);
    let auditor = key(world.op("/v1/principals/500/keys", json!({})).await);
    world.op("/v1/accounts", usd("11", "100")).await;
    world.op("/v1/accounts", usd("21", "200")).await;
    world.op("/v1/accounts", json!({"id": "22", "asset_code": "EUR", "asset_scale": 2, "owner_id": "200"})).await;
    world.op("/v1/transfers", transfer("1001", "9", "21", 500_000)).await;
    world.op("/v1/transfers", transfer("1002", "1", "2", 1234)).await;
    world.op("/v1/transfers", transfer("1003", "21", "2", 777)).await;
    world.op("/v1/transfers", transfer("1004", "1", "11", 50)).await;
    let mut pending = transfer("1005", "21", "2", 999);
    pending["flags"] = json!(["pending"]);
    pending["timeout_s"] = json!(3600);
    world.op("/v1/transfers", pending).await;
    let mut void = transfer("1006", "21", "2", 999);
    void["flags"] = json!(["void_pending"]);
    void["pending_id"] = json!("1005");
    world.op("/v1/transfers", void).await;
    let mut held = transfer("1007", "1", "2", 321);
    held["flags"] = json!(["pending"]);
    held["timeout_s"] = json!(3600);
    world.op("/v1/transfers", held).await;
    let (status, tab) = world.open_tab("7001", 10_000, "55").await;
    assert!((200..300).contains(&status), "Alice's tab: {status} {tab}");
    let jwk = obol_client::Wallet::device_jwk(&[43; 32], "bobs");
    world.op("/v1/principals/200/devices", json!({"id": "56", "jwk": jwk})).await;
    let body = json!({"id": "7002", "payer_account_id": "21", "payee_account_id": "2", "budget": "20000",
        "asset_code": "USD", "asset_scale": 2, "timeout_s": 600, "device_id": "56"});
    let (status, tab) = world.api.post(&bob, "/v1/tabs", body, None).await;
    assert!((200..300).contains(&status), "Bob's tab: {status} {tab}");
    let keys = Keys { alice: world.holder.clone(), bob, merchant: world.merchant.clone(), analyst, auditor };
    (world, keys)
}

/// GET with the answer's status, content type and JSON body.
async fn raw(api: &Api, key: &str, path: &str) -> (u16, String, Value) {
    let response = api.http.get(format!("{}{path}", api.base)).bearer_auth(key).send().await.expect("an answer");
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = response.bytes().await.expect("a body");
    (status, kind, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The request must be refused as a bad query: 400, problem+json, `invalid_query`.
async fn bad_query(api: &Api, key: &str, path: &str) {
    let (status, kind, body) = raw(api, key, path).await;
    assert_eq!((status, code(&body)), (400, "invalid_query"), "{path}: {status} {body}");
    assert!(kind.starts_with("application/problem+json"), "{path}: content type {kind:?}");
}

/// Every page of `path` (which carries its query, at least `?`), following `next`; the items.
async fn every_page(api: &Api, key: &str, path: &str) -> Vec<Value> {
    pages_from(api, key, path, None).await
}

/// Every page of `path` from cursor `after` on.
async fn pages_from(api: &Api, key: &str, path: &str, mut after: Option<String>) -> Vec<Value> {
    let mut items = Vec::new();
    for _ in 0..10_000 {
        let url = match &after {
            Some(cursor) => format!("{path}&after={cursor}"),
            None => path.to_string(),
        };
        let (status, page) = api.get(key, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page.get("next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_string()),
            None => return items,
        }
    }
    panic!("{path}: paging never ends");
}

fn id_of(item: &Value) -> String {
    let item = item.get("transfer").unwrap_or(item);
    item["id"].as_str().expect("an id").to_string()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What a caller owning `own` may see of a page's items, checked item by item.
fn only_own(route: &str, items: &[Value], own: &[&str]) {
    for item in items {
        let touches = |fields: &[&str]| {
            fields.iter().any(|field| {
                item.get(field)
                    .or(item["transfer"].get(field))
                    .and_then(Value::as_str)
                    .is_some_and(|id| own.contains(&id))
            })
        };
        let ok = match route {
            "accounts" => touches(&["id"]),
            "transfers" => touches(&["debit_account_id", "credit_account_id"]),
            "tabs" => touches(&["payer_account_id", "payee_account_id"]),
            _ => false,
        };
        assert!(ok, "{route}: an item of another owner leaked to an owner of {own:?}: {item}");
    }
}

/// Each role against each list route, with every page followed at limit 1: the operator, the
/// analyst and the auditor see everything; each holder and the merchant see exactly their own;
/// only the first three list principals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_lists_exactly_what_it_may_see() {
    let (world, keys) = world("roles").await;
    let api = &world.api;
    let all_accounts = set(&["9", "1", "2", "11", "21", "22"]);
    let all_transfers = set(&["1", "1001", "1002", "1003", "1004", "1005", "1006", "1007"]);
    for key in [&world.operator, &keys.analyst, &keys.auditor] {
        let accounts: BTreeSet<String> = ids(&every_page(api, key, "/v1/accounts?limit=1").await).into_iter().collect();
        assert_eq!(accounts, all_accounts);
        let transfers: Vec<String> = ids(&every_page(api, key, "/v1/transfers?limit=1").await);
        let unique: BTreeSet<String> = transfers.iter().cloned().collect();
        assert_eq!(unique.len(), transfers.len(), "a transfer twice: {transfers:?}");
        assert!(all_transfers.is_subset(&unique), "{transfers:?}");
        let tabs: BTreeSet<String> = ids(&every_page(api, key, "/v1/tabs?limit=1").await).into_iter().collect();
        assert_eq!(tabs, set(&["7001", "7002"]));
        let principals: BTreeSet<String> =
            ids(&every_page(api, key, "/v1/principals?limit=1").await).into_iter().collect();
        assert!(set(&["100", "200", "300", "400", "500"]).is_subset(&principals), "{principals:?}");
    }
    // (key, own accounts, transfers expected among those listed, tabs)
    let owners: [(&str, &[&str], &[&str], &[&str]); 3] = [
        (&keys.alice, &["1", "11"], &["1", "1002", "1004", "1007"], &["7001"]),
        (&keys.bob, &["21", "22"], &["1001", "1003", "1005", "1006"], &["7002"]),
        (&keys.merchant, &["2"], &["1002", "1003", "1005", "1006", "1007"], &["7001", "7002"]),
    ];
    for (key, own, transfers, tabs) in owners {
        let accounts = every_page(api, key, "/v1/accounts?limit=1").await;
        only_own("accounts", &accounts, own);
        assert_eq!(ids(&accounts).into_iter().collect::<BTreeSet<_>>(), set(own));
        let listed = every_page(api, key, "/v1/transfers?limit=1").await;
        only_own("transfers", &listed, own);
        let listed: BTreeSet<String> = ids(&listed).into_iter().collect();
        assert!(set(transfers).is_subset(&listed), "{own:?}: {listed:?}");
        let listed_tabs = every_page(api, key, "/v1/tabs?limit=1").await;
        only_own("tabs", &listed_tabs, own);
        assert_eq!(ids(&listed_tabs).into_iter().collect::<BTreeSet<_>>(), set(tabs));
        let (status, body) = api.get(key, "/v1/principals").await;
        assert_eq!(status, 403, "a holder or merchant listed principals: {body}");
        assert!(body.get("items").is_none(), "{body}");
    }
}

/// A holder names another's owner id, account, payer or payee: 403 for the owner filter, 404 for
/// another's account (exactly as for no account), and never another's item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cannot_reach_another_holders_data_through_filters() {
    let (world, keys) = world("filters").await;
    let api = &world.api;
    let alice = &keys.alice;
    for owner in ["200", "300", "0", "1", "9", "400", "340282366920938463463374607431768211455"] {
        let (status, body) = api.get(alice, &format!("/v1/accounts?owner={owner}")).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "owner={owner}: {body}");
    }
    let (status, body) = api.get(alice, "/v1/accounts?owner=100&asset=USD/2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(body["items"].as_array().unwrap()).into_iter().collect::<BTreeSet<_>>(), set(&["1", "11"]));
    let (status, body) = api.get(alice, "/v1/accounts?asset=EUR/2").await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "{body}");

    // Another's account, the merchant's, the platform's and no account at all answer alike.
    let (_, missing) = api.get(alice, "/v1/transfers?account=999999").await;
    for account in ["21", "22", "2", "9", "999999"] {
        for extra in ["", "&status=posted", "&from_ns=1&to_ns=18446744073709551615", "&amount_min=0", "&after=0"] {
            let (status, body) = api.get(alice, &format!("/v1/transfers?account={account}{extra}")).await;
            assert_eq!((status, code(&body)), (404, "account_not_found"), "account={account}{extra}: {body}");
            assert_eq!(body["code"], missing["code"]);
        }
    }
    // Her own account: only transfers touching it, with her balances.
    let items = every_page(api, alice, "/v1/transfers?account=1&limit=2").await;
    only_own("transfers", &items, &["1", "11"]);
    assert!(ids(&items).contains(&"1002".to_string()));

    // Tabs: naming Bob's payer account or the merchant's payee gives only tabs she is party to.
    for filter in
        ["payer=21", "payee=2", "payer=21&payee=2", "payee=21", "payer=2", "payer=1&payee=2", "payer=0", "payee=0"]
    {
        let items = every_page(api, alice, &format!("/v1/tabs?{filter}&limit=1")).await;
        only_own("tabs", &items, &["1", "11"]);
        assert!(!ids(&items).contains(&"7002".to_string()), "{filter}: Bob's tab leaked");
    }
    let items = every_page(api, &keys.bob, "/v1/tabs?payer=1&limit=1").await;
    assert!(items.is_empty(), "Alice's tab leaked to Bob: {items:?}");
    // The merchant is the payee of both; as payer it has none.
    let items = every_page(api, &keys.merchant, "/v1/tabs?payer=1").await;
    assert_eq!(ids(&items), vec!["7001".to_string()]);
    let (status, body) = api.get(&keys.merchant, "/v1/transfers?account=1").await;
    assert_eq!((status, code(&body)), (404, "account_not_found"), "Alice's account listed to the merchant: {body}");
}

/// Tampered and foreign cursors: any digits answer only what the caller may see; anything else
/// is a 400 invalid_query; nothing is a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cursors_leak_nothing_and_never_fail_the_server() {
    let (world, keys) = world("cursors").await;
    let api = &world.api;
    // A cursor from the operator's pages (of each list) and from the holders'.
    let mut foreign = Vec::new();
    for path in ["/v1/transfers?limit=1", "/v1/accounts?limit=1", "/v1/tabs?limit=1", "/v1/principals?limit=1"] {
        let (status, page) = api.get(&world.operator, path).await;
        assert_eq!(status, 200, "{page}");
        foreign.push(page["next"].as_str().expect("a next cursor").to_string());
    }
    let (_, page) = api.get(&keys.bob, "/v1/transfers?limit=1").await;
    foreign.push(page["next"].as_str().expect("Bob's cursor").to_string());

    let mut digits: Vec<String> = ["0", "1", "00000000000000000001", "18446744073709551615", "999999999999999999"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    digits.extend(foreign);
    let junk = [
        "",
        "-1",
        "abc",
        "1e3",
        "0x10",
        "%201",
        "1%20",
        "%2B1",
        "1.0",
        "%00",
        "1%00",
        "%FF%FE",
        "18446744073709551616",
        "340282366920938463463374607431768211455",
        "999999999999999999999999999999999999999",
        "1234567890123456789012345678901234567890",
        "%E2%80%8B1",
        "１",
    ];
    let owned: [(&str, &[&str]); 3] =
        [(&keys.alice, &["1", "11"]), (&keys.bob, &["21", "22"]), (&keys.merchant, &["2"])];
    for (key, own) in owned {
        for route in ["accounts", "transfers", "tabs"] {
            for filter in ["", "account=1&", "account=21&", "owner=100&", "payer=21&"] {
                let matches = match route {
                    "accounts" => filter.is_empty() || filter.starts_with("owner"),
                    "transfers" => filter.is_empty() || filter.starts_with("account"),
                    _ => filter.is_empty() || filter.starts_with("payer"),
                };
                if !matches {
                    continue;
                }
                for after in &digits {
                    let path = format!("/v1/{route}?{filter}after={after}&limit=1000");
                    let (status, body) = api.get(key, &path).await;
                    assert!(status < 500, "{path}: {status} {body}");
                    if status == 200 {
                        only_own(route, body["items"].as_array().unwrap(), own);
                    } else {
                        // 400: a cursor of another list's shape (principals page by CREATED_NS-ID).
                        assert!([400, 403, 404].contains(&status), "{path}: {status} {body}");
                    }
                }
                for after in junk {
                    let path = format!("/v1/{route}?{filter}after={after}");
                    let (status, _, body) = raw(api, key, &path).await;
                    assert!(status < 500, "{path}: {status} {body}");
                    assert!(body.get("items").is_none(), "{path}: junk cursor answered items {body}");
                    if status == 400 {
                        assert_eq!(code(&body), "invalid_query", "{path}: {body}");
                    } else {
                        assert!([403, 404].contains(&status), "{path}: {status} {body}");
                    }
                }
            }
        }
        // Principals stay closed whatever the cursor.
        for after in digits.iter().map(String::as_str).chain(junk) {
            let (status, body) = api.get(key, &format!("/v1/principals?after={after}")).await;
            assert!(status == 403 || status == 400, "principals after={after}: {status} {body}");
            assert!(body.get("items").is_none(), "{body}");
        }
    }
    // The operator: digits are positions (200), junk is 400 on every route.
    for route in ["accounts", "transfers", "tabs"] {
        for after in ["0", "18446744073709551615"] {
            let (status, body) = api.get(&world.operator, &format!("/v1/{route}?after={after}")).await;
            assert_eq!(status, 200, "{route} after={after}: {body}");
        }
        let (status, body) = api.get(&world.operator, &format!("/v1/{route}?after=18446744073709551615")).await;
        assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
        for after in junk {
            bad_query(api, &world.operator, &format!("/v1/{route}?after={after}")).await;
        }
    }
    // A principals cursor is CREATED_NS-ID (principals page in the order they were made).
    for after in ["0-0", "18446744073709551615-340282366920938463463374607431768211455"] {
        let (status, body) = api.get(&world.operator, &format!("/v1/principals?after={after}")).await;
        assert_eq!(status, 200, "principals after={after}: {body}");
    }
    for after in [
        "",
        "-1",
        "0",
        "abc",
        "1-",
        "-1-1",
        "18446744073709551616-1",
        "1-340282366920938463463374607431768211456",
        "1234567890123456789012345678901234567890",
    ] {
        bad_query(api, &world.operator, &format!("/v1/principals?after={after}")).await;
    }
}

/// Page sizes: 1 and 1000 are fine; 0, 1001, huge, negative, fractional, empty or non-numeric
/// limits are 400 invalid_query on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_outside_1_to_1000_are_bad_queries() {
    let (world, keys) = world("limits").await;
    let api = &world.api;
    for route in ["accounts", "transfers", "tabs", "principals"] {
        let (status, body) = api.get(&world.operator, &format!("/v1/{route}?limit=1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 1, "{route}: {body}");
        assert!(body["next"].is_string(), "{route}: more than one, so a cursor: {body}");
        let (status, body) = api.get(&world.operator, &format!("/v1/{route}?limit=1000")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("next").is_none(), "{route}: {body}");
        for limit in [
            "0",
            "1001",
            "4294967296",
            "18446744073709551616",
            "99999999999999999999999999",
            "-1",
            "1.5",
            "",
            "abc",
            "1e3",
            "%00",
            "10%00",
            "0x10",
            "%E2%80%8B5",
        ] {
            bad_query(api, &world.operator, &format!("/v1/{route}?limit={limit}")).await;
            bad_query(api, &keys.alice, &format!("/v1/{route}?limit={limit}")).await;
        }
    }
    // A page of exactly the last item has no cursor; a page ending early has one.
    let all = every_page(api, &world.operator, "/v1/accounts?limit=1000").await;
    let (status, body) = api.get(&world.operator, &format!("/v1/accounts?limit={}", all.len())).await;
    assert_eq!(status, 200);
    assert!(body.get("next").is_none(), "{body}");
}

/// Unknown, repeated and percent-encoded parameters: 400 invalid_query where they cannot be
/// read, and never a leak or a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_parameters_are_refused_or_harmless() {
    let (world, keys) = world("params").await;
    let api = &world.api;
    let alice = &keys.alice;
    for path in [
        "/v1/accounts?foo=1",
        "/v1/accounts?owner_id=200",
        "/v1/accounts?Owner=200",
        "/v1/transfers?accounts=21",
        "/v1/transfers?account_id=21",
        "/v1/tabs?payer_account_id=21",
        "/v1/principals?name=Bob",
        // Repeated parameters, even one of them the caller's own.
        "/v1/accounts?owner=100&owner=200",
        "/v1/accounts?owner=200&owner=100",
        "/v1/transfers?account=1&account=21",
        "/v1/transfers?account=21&account=1",
        "/v1/tabs?payer=1&payer=21",
        "/v1/accounts?limit=1&limit=2",
        "/v1/accounts?after=0&after=1",
        // Array and junk syntax.
        "/v1/transfers?account[]=21",
        "/v1/transfers?account[0]=21",
        "/v1/accounts?owner=%FF",
        "/v1/accounts?owner=100%00",
        "/v1/accounts?owner=%2D1",
        "/v1/accounts?owner=",
        "/v1/accounts?owner=0x64",
        "/v1/accounts?owner=%EF%BC%91%EF%BC%90%EF%BC%90",
        "/v1/accounts?asset=%00%00%00/2",
        "/v1/accounts?asset=USD",
        "/v1/accounts?asset=USD/256",
        "/v1/accounts?asset=USD/-1",
        "/v1/accounts?asset=/",
        "/v1/accounts?asset=usd/2",
        "/v1/accounts?asset=USDT/2",
        "/v1/accounts?asset=%E2%82%AC%E2%82%AC/2",
        "/v1/transfers?account=21%00",
        "/v1/transfers?account=-21",
        "/v1/transfers?account=340282366920938463463374607431768211456",
        "/v1/transfers?status=%E2%80%8Bposted",
        "/v1/transfers?status=",
        "/v1/tabs?payee=2%20",
        "/v1/tabs?payer=%20",
    ] {
        bad_query(api, alice, path).await;
        bad_query(api, &world.operator, path).await;
    }
    // Read as plain values once decoded: fine, and still only hers.
    for path in
        ["/v1/accounts?owner=%31%30%30", "/v1/accounts?%6Fwner=100", "/v1/accounts?&&owner=100&&", "/v1/accounts?"]
    {
        let (status, body) = api.get(alice, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        only_own("accounts", body["items"].as_array().unwrap(), &["1", "11"]);
    }
    let (status, body) = api.get(alice, "/v1/accounts?%6Fwner=%32%30%30").await;
    assert_eq!(status, 403, "{body}");
    // A very long query.
    let long = format!("/v1/accounts?owner={}", "1".repeat(20_000));
    let (status, body) = api.get(alice, &long).await;
    assert!(status == 400 || status == 414 || status == 431, "{status} {body}");
}

/// Time, amount and status filters at their edges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_amount_and_status_filters_hold_at_their_edges() {
    let (world, keys) = world("edges").await;
    let api = &world.api;
    let op = &world.operator;
    let all = every_page(api, op, "/v1/transfers?limit=1000").await;
    let ts = |id: &str| -> u64 {
        let item = all.iter().find(|i| id_of(i) == id).expect("listed");
        item["transfer"]["timestamp"].as_str().unwrap().parse().unwrap()
    };
    let t2 = ts("1002");
    for key in [op, &keys.alice] {
        for path in [
            format!("/v1/transfers?from_ns={t2}&to_ns={t2}"),
            format!("/v1/transfers?from_ns={}&to_ns={t2}", t2 + 1),
            "/v1/transfers?from_ns=18446744073709551615&to_ns=0".to_string(),
            "/v1/transfers?from_ns=0&to_ns=0".to_string(),
            "/v1/transfers?from_ns=18446744073709551616".to_string(),
            "/v1/transfers?to_ns=-1".to_string(),
            "/v1/transfers?from_ns=1.5".to_string(),
            "/v1/transfers?amount_min=10&amount_max=9".to_string(),
            "/v1/transfers?amount_min=340282366920938463463374607431768211456".to_string(),
            "/v1/transfers?amount_max=-1".to_string(),
            "/v1/transfers?amount_min=1e3".to_string(),
            "/v1/transfers?status=POSTED".to_string(),
            "/v1/transfers?status=settled".to_string(),
            "/v1/transfers?status=open".to_string(),
            "/v1/tabs?status=posted".to_string(),
            "/v1/tabs?status=Open".to_string(),
            "/v1/tabs?status=closed".to_string(),
            format!("/v1/transfers?account=1&from_ns={t2}&to_ns={t2}"),
            "/v1/transfers?account=1&amount_min=2&amount_max=1".to_string(),
        ] {
            bad_query(api, key, &path).await;
        }
    }
    // A window of one timestamp holds exactly that transfer.
    let (status, body) = api.get(op, &format!("/v1/transfers?from_ns={t2}&to_ns={}", t2 + 1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(body["items"].as_array().unwrap()), vec!["1002".to_string()]);
    let (status, body) = api.get(&keys.bob, &format!("/v1/transfers?from_ns={t2}&to_ns={}", t2 + 1)).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "Alice's transfer leaked: {body}");
    for path in
        ["/v1/transfers?to_ns=1", "/v1/transfers?from_ns=18446744073709551615", "/v1/transfers?from_ns=0&to_ns=1"]
    {
        let (status, body) = api.get(op, path).await;
        assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "{path}: {body}");
    }
    // Amounts: equal bounds give exactly that amount; the largest bounds are fine.
    let (status, body) = api.get(op, "/v1/transfers?amount_min=777&amount_max=777").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(body["items"].as_array().unwrap()), vec!["1003".to_string()]);
    let (status, body) = api.get(&keys.alice, "/v1/transfers?amount_min=777&amount_max=777").await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "Bob's transfer leaked: {body}");
    let max = "340282366920938463463374607431768211455";
    let (status, body) = api.get(op, &format!("/v1/transfers?amount_min={max}&amount_max={max}")).await;
    assert_eq!((status, body["items"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    // States.
    let state = |status: &'static str| {
        let api = &world.api;
        async move { ids(&every_page(api, op, &format!("/v1/transfers?status={status}&limit=2")).await) }
    };
    assert!(state("pending").await.contains(&"1007".to_string()));
    let voided = state("voided").await;
    assert!(voided.contains(&"1005".to_string()) && voided.contains(&"1006".to_string()), "{voided:?}");
    assert!(state("posted").await.contains(&"1002".to_string()));
    assert!(state("expired").await.is_empty());
    assert!(state("pending_posted").await.is_empty());
    let pending_for_bob = every_page(api, &keys.bob, "/v1/transfers?status=pending").await;
    only_own("transfers", &pending_for_bob, &["21", "22"]);
    assert!(!ids(&pending_for_bob).contains(&"1007".to_string()), "Alice's pending transfer leaked");
    for status in ["open", "expired", "settled"] {
        let items = every_page(api, &keys.bob, &format!("/v1/tabs?status={status}")).await;
        only_own("tabs", &items, &["21", "22"]);
    }
    assert_eq!(ids(&every_page(api, op, "/v1/tabs?status=open").await).len(), 2);
    // Principals by role and status.
    let holders = every_page(api, &keys.auditor, "/v1/principals?role=holder&limit=1").await;
    assert_eq!(ids(&holders).into_iter().collect::<BTreeSet<_>>(), set(&["100", "200"]));
    for path in [
        "/v1/principals?role=root",
        "/v1/principals?role=Holder",
        "/v1/principals?status=revoked",
        "/v1/principals?status=",
    ] {
        bad_query(api, op, path).await;
    }
    let suspended = every_page(api, &keys.analyst, "/v1/principals?status=suspended").await;
    assert!(suspended.is_empty(), "{suspended:?}");
}

/// A suspended holder's key and a key without the read scope list nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_principals_and_keys_without_read_list_nothing() {
    let (world, keys) = world("scopes").await;
    let api = &world.api;
    let pay_only =
        world.op("/v1/principals/100/keys", json!({"scopes": ["pay"]})).await["key"].as_str().unwrap().to_string();
    let manage_only =
        world.op("/v1/principals/400/keys", json!({"scopes": ["manage"]})).await["key"].as_str().unwrap().to_string();
    let op_pay = world.op("/v1/principals/100/keys", json!({"scopes": ["pay", "manage"]})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let paths = [
        "/v1/accounts",
        "/v1/accounts?owner=100",
        "/v1/transfers",
        "/v1/transfers?account=1",
        "/v1/tabs",
        "/v1/tabs?payer=1",
        "/v1/principals",
        "/v1/accounts?after=0&limit=1000",
    ];
    for key in [&pay_only, &manage_only, &op_pay] {
        for path in paths {
            let (status, body) = api.get(key, path).await;
            assert_eq!(status, 403, "{path} without read: {body}");
            assert!(body.get("items").is_none(), "{body}");
        }
    }
    world.op("/v1/principals/200/status", json!({"status": "suspended"})).await;
    for path in paths.iter().chain(["/v1/transfers?account=21", "/v1/tabs?payer=21"].iter()) {
        let (status, body) = api.get(&keys.bob, path).await;
        assert!(status == 401 || status == 403, "{path} by a suspended holder: {status} {body}");
        assert!(body.get("items").is_none(), "{body}");
    }
    // The suspension shows in the principal list; others still list their own.
    let suspended = every_page(api, &world.operator, "/v1/principals?status=suspended").await;
    assert_eq!(ids(&suspended), vec!["200".to_string()]);
    let (status, _) = api.get(&keys.alice, "/v1/accounts").await;
    assert_eq!(status, 200);
    // A garbage or absent key.
    for key in ["", "obol_live_nope", "Bearer"] {
        let (status, body) = api.get(key, "/v1/transfers").await;
        assert_eq!(status, 401, "{key:?}: {body}");
    }
    let (status, _) = (api.http.get(format!("{}/v1/accounts", api.base)).send().await.unwrap().status().as_u16(), ());
    assert_eq!(status, 401);
}

/// Paging to the end while transfers (and accounts) are appended visits every entry that existed
/// when paging began exactly once, in order, and what was appended behind the cursor too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_transfers_are_appended_visits_each_once() {
    let (world, keys) = world("append").await;
    for batch in 0..5u128 {
        let transfers: Vec<Value> =
            (0..200u128).map(|i| transfer(&(10_000 + batch * 200 + i).to_string(), "1", "2", 1 + i % 7)).collect();
        world.op("/v1/transfers/batch", json!({"transfers": transfers})).await;
    }
    let before_all: Vec<String> = ids(&every_page(&world.api, &world.operator, "/v1/transfers?limit=1000").await);
    let before_alice: Vec<String> =
        ids(&every_page(&world.api, &keys.alice, "/v1/transfers?account=1&limit=1000").await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let api = Api::new(&world.api.base);
        let operator = world.operator.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 50_000u128;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (from, to) = if n % 3 == 0 { ("21", "2") } else { ("1", "2") };
                let batch: Vec<Value> = (0..5).map(|k| transfer(&(n + k).to_string(), from, to, 1)).collect();
                let (status, body) =
                    api.post(&operator, "/v1/transfers/batch", json!({"transfers": batch}), None).await;
                assert_eq!(status, 200, "{body}");
                if n % 50 == 0 {
                    let account = (n / 10).to_string();
                    let (status, body) = api.post(&operator, "/v1/accounts", usd(&account, "100"), None).await;
                    assert_eq!(status, 201, "{body}");
                }
                n += 5;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            n
        })
    };
    let check = |items: &[Value], before: &[String], label: &str| {
        let listed = ids(items);
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "{label}: an item twice");
        let times: Vec<u64> =
            items.iter().map(|i| i["transfer"]["timestamp"].as_str().unwrap().parse().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{label}: out of order");
        assert_eq!(&listed[..before.len()], before, "{label}: what existed is not visited in order, each once");
        listed.len()
    };
    let mut appended_seen = 0;
    for round in 0..3 {
        for limit in [7usize, 100, 1000] {
            let all = every_page(&world.api, &world.operator, &format!("/v1/transfers?limit={limit}")).await;
            appended_seen +=
                check(&all, &before_all, &format!("round {round} operator limit {limit}")) - before_all.len();
            let hers = every_page(&world.api, &keys.alice, &format!("/v1/transfers?account=1&limit={limit}")).await;
            check(&hers, &before_alice, &format!("round {round} alice limit {limit}"));
            only_own("transfers", &hers, &["1", "11"]);
            let hers = every_page(&world.api, &keys.alice, &format!("/v1/transfers?limit={limit}")).await;
            only_own("transfers", &hers, &["1", "11"]);
            let accounts = every_page(&world.api, &keys.alice, &format!("/v1/accounts?limit={limit}")).await;
            assert!(accounts.iter().all(|a| a["owner_id"] == "100"), "round {round}: another's account: {accounts:?}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.await.unwrap();
    assert!(last > 50_000 && appended_seen > 0, "the writer ran while paging");
    // At rest, the full list is every transfer ever made, each once.
    let final_all = ids(&every_page(&world.api, &world.operator, "/v1/transfers?limit=333").await);
    let unique: BTreeSet<&String> = final_all.iter().collect();
    assert_eq!(unique.len(), final_all.len());
    assert_eq!(final_all.len(), before_all.len() + (last - 50_000) as usize);
}

/// A kill -9 between pages: the same cursor continues on the restarted server with neither a
/// skip nor a repeat, on every list, for the operator and a holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_survives_kill_9_without_skip_or_repeat() {
    let (mut world, keys) = world("kill").await;
    for tab in 7003..7007 {
        let (status, body) = world.open_tab(&tab.to_string(), 1_000, "55").await;
        assert!((200..300).contains(&status), "{body}");
    }
    let transfers: Vec<Value> =
        (0..300u128).map(|i| transfer(&(20_000 + i).to_string(), "1", "2", 1 + i % 5)).collect();
    world.op("/v1/transfers/batch", json!({"transfers": transfers})).await;
    for i in 0..30u128 {
        world.op("/v1/accounts", usd(&(30_000 + i).to_string(), if i % 2 == 0 { "100" } else { "200" })).await;
        world.op("/v1/principals", json!({"id": (40_000 + i).to_string(), "role": "holder", "name": "p"})).await;
    }
    let routes: Vec<(String, &str)> = vec![
        (world.operator.clone(), "/v1/transfers?limit=7"),
        (world.operator.clone(), "/v1/transfers?amount_min=2&amount_max=3&limit=5"),
        (keys.alice.clone(), "/v1/transfers?account=1&limit=11"),
        (keys.alice.clone(), "/v1/transfers?limit=13"),
        (world.operator.clone(), "/v1/accounts?limit=4"),
        (keys.bob.clone(), "/v1/accounts?limit=2"),
        (world.operator.clone(), "/v1/tabs?limit=1"),
        (keys.merchant.clone(), "/v1/tabs?limit=1"),
        (keys.auditor.clone(), "/v1/principals?limit=3"),
    ];
    let mut whole = Vec::new();
    let mut half = Vec::new();
    for (key, path) in &routes {
        let full = ids(&every_page(&world.api, key, path).await);
        // Two pages, then stop with the cursor.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..2 {
            let url = match &after {
                Some(c) => format!("{path}&after={c}"),
                None => path.to_string(),
            };
            let (status, page) = world.api.get(key, &url).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(ids(page["items"].as_array().unwrap()));
            after = page["next"].as_str().map(str::to_string);
        }
        let cursor = after.expect("more than two pages");
        whole.push(full);
        half.push((seen, cursor));
    }
    world.kill_and_restart().await;
    for (((key, path), full), (mut seen, cursor)) in routes.iter().zip(&whole).zip(half) {
        let rest = ids(&pages_from(&world.api, key, path, Some(cursor)).await);
        seen.extend(rest);
        assert_eq!(&seen, full, "{path}: paging across a restart skipped or repeated");
    }
    // New transfers after the restart come after the old cursor, once.
    let (_, page) = world.api.get(&world.operator, "/v1/transfers?limit=1000").await;
    let old_end =
        page["items"].as_array().unwrap().last().unwrap()["transfer"]["timestamp"].as_str().unwrap().to_string();
    world.op("/v1/transfers", transfer("60000", "1", "2", 9)).await;
    let after = ids(&every_page(&world.api, &world.operator, &format!("/v1/transfers?after={old_end}&limit=1")).await);
    assert_eq!(after, vec!["60000".to_string()]);
}

/// Principals created while an auditor pages through `GET /v1/principals` are visited like
/// transfers appended meanwhile ("paging until `next` is `None` visits every matching entry
/// exactly once, whatever is appended meanwhile", lists.rs). Principals are paged by id, and ids
/// are the operator's choice or random, so one created with an id below the cursor is never
/// visited by that paging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn principals_created_while_paging_are_visited() {
    let (world, keys) = world("principals").await;
    for i in 0..20u128 {
        world.op("/v1/principals", json!({"id": (2_000 + i).to_string(), "role": "holder", "name": "p"})).await;
    }
    let (status, first) = world.api.get(&keys.auditor, "/v1/principals?limit=10").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next"].as_str().expect("more pages").to_string();
    let mut seen = ids(first["items"].as_array().unwrap());
    // One created below the cursor (no id given would pick a random one, anywhere), one above.
    world.op("/v1/principals", json!({"id": "150", "role": "holder", "name": "late-low"})).await;
    world.op("/v1/principals", json!({"id": "9999", "role": "holder", "name": "late-high"})).await;
    seen.extend(ids(&pages_from(&world.api, &keys.auditor, "/v1/principals?limit=10", Some(cursor)).await));
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a principal twice");
    assert!(seen.contains(&"9999".to_string()));
    assert!(seen.contains(&"150".to_string()), "principal 150, created while paging, was never listed: {seen:?}");
}
