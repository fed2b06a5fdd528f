//! Goal: one credential cannot exceed its request rate, and one address cannot keep guessing
//! keys: both get 429 `rate_limited` with a Retry-After.
//! Method: the real `obol serve` with `--rate-limit 5` (burst 10), driven over loopback.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_addresses_are_throttled() {
    let dir = std::env::temp_dir().join(format!("obol-throttle-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let launched = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--rate-limit".as_ref(),
        "5".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let (mut child, base, key) = (launched.child, launched.base, launched.key.unwrap_or_default());
    let http = obol_client::http_client(None).unwrap();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..30 {
        let response = http.get(format!("{base}/v1/me")).bearer_auth(&key).send().await.unwrap();
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let problem: serde_json::Value = response.json().await.unwrap();
            assert_eq!(problem["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "the burst is allowed: {statuses:?}");
    assert!(statuses.contains(&429), "then the key is throttled: {statuses:?}");
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap() >= 1));

    let mut guessed = Vec::new();
    let mut guess_waits = Vec::new();
    for attempt in 0..25 {
        let response = http
            .get(format!("{base}/v1/me"))
            .bearer_auth(format!("obol_live_00000000000000{attempt:02}_0000"))
            .send()
            .await
            .unwrap();
        if let Some(wait) = response.headers().get("retry-after") {
            guess_waits.push(wait.to_str().unwrap().parse::<u64>().unwrap());
        }
        guessed.push(response.status().as_u16());
    }
    // One failed attempt comes back every 3 s: Retry-After says so, not a fixed minute.
    assert!(!guess_waits.is_empty() && guess_waits.iter().all(|w| (1..=3).contains(w)), "{guess_waits:?}");
    assert!(guessed[..20].iter().all(|s| *s == 401), "{guessed:?}");
    assert!(guessed[20..].iter().all(|s| *s == 429), "an address that keeps guessing is stopped: {guessed:?}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
