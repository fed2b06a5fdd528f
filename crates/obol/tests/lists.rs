//! Goal: an account's history of 100,000 transfers pages through `GET /v1/transfers` with
//! filters and gives every matching transfer exactly once, in order (oldest or newest first); `obol transfer list` does
//! the same from the command line.
//! Method: the real binary over loopback; the transfers go in through the batch route; the
//! expected answers are computed from what was sent.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

mod support;

const TRANSFERS: u64 = 100_000;

fn amount(n: u64) -> u64 {
    (n * 7919) % 1000 + 1
}

/// Pages through `path` (which carries its filters) and returns every item's transfer.
async fn every_page(api: &support::Api, key: &str, path: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(cursor) => format!("{path}&after={cursor}"),
            None => path.to_string(),
        };
        let (status, page) = api.get(key, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().map(|item| item["transfer"].clone()));
        match page.get("next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_string()),
            None => return (items, pages),
        }
    }
}

fn ids(items: &[Value]) -> Vec<u64> {
    items.iter().map(|t| t["id"].as_str().unwrap().parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_of_100000_transfers_pages_with_filters_exactly_once() {
    let dir = std::env::temp_dir().join(format!("obol-lists-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let launched = support::launch(["--listen", "127.0.0.1:0", "--data-dir", dir.join("data").to_str().unwrap()]);
    let mut child = launched.child;
    let key = launched.key.unwrap();
    let api = support::Api::new(&launched.base);
    for (id, flags) in [("9", json!([])), ("1", json!(["history"])), ("2", json!([]))] {
        let (status, body) = api
            .post(&key, "/v1/accounts", json!({"id": id, "asset_code": "EUR", "asset_scale": 2, "flags": flags}), None)
            .await;
        assert!(status == 201, "{body}");
    }
    // Transfer n: from 9 into 1 when n is even, from 1 to 2 when odd; account 1 is in every one.
    let mut n = 1u64;
    while n <= TRANSFERS {
        let last = (n + 8189).min(TRANSFERS);
        let transfers: Vec<Value> = (n..=last)
            .map(|i| {
                let (from, to) = if i % 2 == 0 { ("9", "1") } else { ("1", "2") };
                json!({"id": i.to_string(), "debit_account_id": from, "credit_account_id": to,
                       "amount": amount(i).to_string(), "asset_code": "EUR", "asset_scale": 2})
            })
            .collect();
        let (status, body) = api.post(&key, "/v1/transfers/batch", json!({ "transfers": transfers }), None).await;
        assert_eq!(status, 200, "{body}");
        n = last + 1;
    }

    let (all, pages) = every_page(&api, &key, "/v1/transfers?account=1&limit=1000").await;
    assert_eq!(pages, 100);
    let listed = ids(&all);
    assert_eq!(listed, (1..=TRANSFERS).collect::<Vec<_>>(), "every transfer once, oldest first");
    let timestamps: Vec<u64> = all.iter().map(|t| t["timestamp"].as_str().unwrap().parse().unwrap()).collect();

    let (between, _) = every_page(&api, &key, "/v1/transfers?account=1&amount_min=500&amount_max=600&limit=777").await;
    let expected: Vec<u64> = (1..=TRANSFERS).filter(|i| (500..=600).contains(&amount(*i))).collect();
    assert_eq!(ids(&between), expected);

    // Time: from the 25,000th transfer (included) to the 75,000th (excluded), posted only.
    let (from, to) = (timestamps[24_999], timestamps[74_999]);
    let (window, _) =
        every_page(&api, &key, &format!("/v1/transfers?account=1&from_ns={from}&to_ns={to}&status=posted&limit=1000"))
            .await;
    assert_eq!(ids(&window), (25_000..75_000).collect::<Vec<_>>());

    // The operator's list of every transfer, and an account that takes part in half of them.
    let (everything, _) = every_page(&api, &key, "/v1/transfers?limit=1000").await;
    assert_eq!(everything.len() as u64, TRANSFERS);
    let (into_two, _) = every_page(&api, &key, "/v1/transfers?account=2&limit=1000").await;
    assert_eq!(ids(&into_two), (1..=TRANSFERS).filter(|i| i % 2 == 1).collect::<Vec<_>>());

    // Newest first (the dashboard's order): the same transfers reversed, through both paths
    // (an account's history and the whole list), with filters, each exactly once.
    let (newest, _) = every_page(&api, &key, "/v1/transfers?account=1&order=desc&limit=1000").await;
    assert_eq!(ids(&newest), (1..=TRANSFERS).rev().collect::<Vec<_>>(), "every transfer once, newest first");
    let (newest_all, _) = every_page(&api, &key, "/v1/transfers?order=desc&limit=999").await;
    assert_eq!(ids(&newest_all), (1..=TRANSFERS).rev().collect::<Vec<_>>());
    let (window_desc, _) =
        every_page(&api, &key, &format!("/v1/transfers?account=2&order=desc&from_ns={from}&to_ns={to}&limit=333"))
            .await;
    assert_eq!(ids(&window_desc), (25_000..75_000).rev().filter(|i| i % 2 == 1).collect::<Vec<_>>());
    let (status, problem) = api.get(&key, "/v1/transfers?order=sideways").await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_query")), "{problem}");

    // The same from the command line, every page followed.
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args([
            "transfer",
            "list",
            "--account",
            "1",
            "--min",
            "500",
            "--max",
            "600",
            "--limit",
            "1000",
            "--all",
            "--json",
        ])
        .env("OBOL_SERVER", &launched.base)
        .env("OBOL_API_KEY", &key)
        .env("OBOL_CONFIG", dir.join("no-config.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let printed: Vec<u64> = printed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["transfer"]["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let unique: BTreeSet<u64> = printed.iter().copied().collect();
    assert_eq!(unique.len(), printed.len(), "no transfer twice");
    assert_eq!(printed, expected);

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
