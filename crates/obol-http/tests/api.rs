//! Goal: the API does what its OpenAPI document says, and bad input never writes or 5xxes.
//! Method: the real router over a real engine and store (SQLite in a scratch directory; the
//! payment flow and the bad-input corpus also on PostgreSQL in a fresh schema), driven with
//! `tower::ServiceExt::oneshot`; every bad request is checked for a 4xx problem+json with a
//! stable code and for an unchanged ledger.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use obol_app::auth::bootstrap_operator;
use obol_http::{AppState, app};
use obol_store::{Engine, Node, PgStore, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    key: String,
    engine: Engine,
    _place: Place,
}

/// Where a test app keeps its data; removed when the test ends.
enum Place {
    Dir(std::path::PathBuf),
    Schema(String),
}

impl Drop for Place {
    fn drop(&mut self) {
        match self {
            Place::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Schema(schema) => {
                let _ = PgStore::drop_schema(&pg_url(), schema);
            }
        }
    }
}

fn pg_url() -> String {
    std::env::var("OBOL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(tag: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{tag}_{}_{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn with_node<S: obol_store::Store + 'static>(mut node: Node<S>, place: Place) -> TestApp {
    let key = bootstrap_operator(&mut node, &obol_app::SystemEnv).unwrap().expect("a fresh store gets an operator key");
    let engine = Engine::start(node);
    let state = AppState::new(engine.clone(), "http").with_instance_id("local").expect("a valid id");
    TestApp { router: app(state), key, engine, _place: place }
}

fn spawn_app() -> TestApp {
    let dir = std::env::temp_dir().join(unique("obol-http-test"));
    let _ = std::fs::remove_dir_all(&dir);
    with_node(Node::open(SqliteStore::open(&dir).unwrap(), 5).unwrap(), Place::Dir(dir))
}

/// The app on PostgreSQL, or `None` (with a notice) when none is reachable outside CI.
fn spawn_app_on_postgres() -> Option<TestApp> {
    let schema = unique("obol_http_t");
    match PgStore::open_in_schema(&pg_url(), &schema) {
        Ok(store) => Some(with_node(Node::open(store, 5).unwrap(), Place::Schema(schema))),
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but PostgreSQL is unreachable: {error}");
            eprintln!("SKIPPED: PostgreSQL API tests ({error})");
            None
        }
    }
}

impl TestApp {
    async fn raw(&self, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, content_type, value)
    }

    async fn send(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, String, Value) {
        let mut builder =
            Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {}", self.key));
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        self.raw(builder.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, value) = self.send(Method::POST, path, Some(&body.to_string())).await;
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, value) = self.send(Method::GET, path, None).await;
        (status, value)
    }

    /// A fingerprint of everything stored: account balances and every transfer.
    fn snapshot(&self) -> String {
        let ledger = self.engine.ledger().read().unwrap();
        format!("{:?}{:?}", ledger.accounts(), ledger.transfers())
    }

    async fn accounts(&self) {
        for (id, code, flags) in [("1", "USD", json!([])), ("2", "USD", json!(["history"])), ("3", "EUR", json!([]))] {
            let (status, _) = self
                .post("/v1/accounts", json!({"id": id, "asset_code": code, "asset_scale": 2, "flags": flags}))
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
    }
}

fn usd_transfer(id: &str, from: &str, to: &str, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": from, "credit_account_id": to, "amount": amount, "asset_code": "USD", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_created_once_and_a_retry_is_harmless() {
    let app = spawn_app();
    let body = json!({"id": "7", "asset_code": "KRW", "asset_scale": 0, "flags": ["debits_must_not_exceed_credits"]});
    let (status, first) = app.post("/v1/accounts", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["flags"], json!(["debits_must_not_exceed_credits"]));
    let (status, again) = app.post("/v1/accounts", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first, again);
    let (status, conflict) = app.post("/v1/accounts", json!({"id": "7", "asset_code": "KRW", "asset_scale": 0})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["code"], "exists_with_different_flags");
    let (status, shown) = app.get("/v1/accounts/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_moves_money_and_shows_in_balance_and_history() {
    payment_flow(spawn_app()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_moves_money_and_shows_in_balance_and_history_on_postgres() {
    if let Some(app) = spawn_app_on_postgres() {
        payment_flow(app).await;
    }
}

async fn payment_flow(app: TestApp) {
    app.accounts().await;
    let (status, transfer) = app.post("/v1/transfers", usd_transfer("10", "1", "2", "250")).await;
    assert_eq!(status, StatusCode::CREATED, "{transfer}");
    assert_eq!(transfer["amount"], "250");
    let (status, retry) = app.post("/v1/transfers", usd_transfer("10", "1", "2", "250")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry, transfer);
    let (status, different) = app.post("/v1/transfers", usd_transfer("10", "1", "2", "251")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(different["code"], "exists_with_different_amount");
    let (_, balance) = app.get("/v1/accounts/1/balance").await;
    assert_eq!(balance["net_side"], "debit");
    assert_eq!(balance["net_posted"], "250");
    let (_, balance) = app.get("/v1/accounts/2/balance").await;
    assert_eq!(balance["net_side"], "credit");
    assert_eq!(balance["available"], "250");
    for id in 11..16 {
        let (status, _) = app.post("/v1/transfers", usd_transfer(&id.to_string(), "1", "2", "1")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, page) = app.get("/v1/accounts/2/history?limit=4").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    assert_eq!(page["items"][0]["balances_after"]["credits_posted"], "250");
    let next = page["next"].as_str().unwrap().to_string();
    let (_, rest) = app.get(&format!("/v1/accounts/2/history?limit=4&after={next}")).await;
    let ids: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|i| i["transfer"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["14", "15"]);
    assert!(rest.get("next").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transfer_is_posted_through_the_api() {
    let app = spawn_app();
    app.accounts().await;
    let mut pending = usd_transfer("20", "1", "2", "500");
    pending["flags"] = json!(["pending"]);
    pending["timeout_s"] = json!(60);
    let (status, created) = app.post("/v1/transfers", pending).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["pending_status"], "pending");
    let (status, posted) = app
        .post("/v1/transfers", json!({"id": "21", "pending_id": "20", "amount": "300", "flags": ["post_pending"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["amount"], "300");
    let (_, original) = app.get("/v1/transfers/20").await;
    assert_eq!(original["pending_status"], "posted");
    let (status, again) =
        app.post("/v1/transfers", json!({"id": "22", "pending_id": "20", "flags": ["void_pending"]})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again["code"], "pending_transfer_already_posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_per_event_and_chains_are_atomic() {
    let app = spawn_app();
    app.accounts().await;
    let mut first = usd_transfer("30", "1", "2", "5");
    first["flags"] = json!(["linked"]);
    let batch = json!({"transfers": [first, usd_transfer("31", "1", "3", "5"), usd_transfer("32", "1", "2", "7")]});
    let (status, results) = app.post("/v1/transfers/batch", batch).await;
    assert_eq!(status, StatusCode::OK);
    let codes: Vec<&str> =
        results["results"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["linked_event_failed", "accounts_must_have_the_same_asset", "ok"]);
    assert_eq!(app.get("/v1/transfers/30").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/transfers/32").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_durable_record() {
    let app = spawn_app();
    app.accounts().await;
    let records_before = app.engine.stats().records.load(std::sync::atomic::Ordering::Relaxed);
    let mut tasks = Vec::new();
    for id in 1000..1400u32 {
        let router = app.router.clone();
        let key = app.key.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri("/v1/transfers")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(usd_transfer(&id.to_string(), "1", "2", "1").to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    let records = app.engine.stats().records.load(std::sync::atomic::Ordering::Relaxed) - records_before;
    assert!(records < 400, "400 requests took {records} records: group commit did not coalesce");
    let (_, balance) = app.get("/v1/accounts/2/balance").await;
    assert_eq!(balance["credits_posted"], "400");
}

/// The bad-input corpus: (method, path, body, expected status, expected code).
fn corpus() -> Vec<(Method, String, String, StatusCode, &'static str)> {
    let t = |amount: &str| usd_transfer("40", "1", "2", amount).to_string();
    let mut cases = vec![
        (Method::POST, "/v1/transfers".into(), "{\"id\": \"40\",".into(), StatusCode::BAD_REQUEST, "json_syntax"),
        (Method::POST, "/v1/transfers".into(), "[]".into(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), "null".into(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), json!({"id": 40, "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 2}).to_string(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": 100, "asset_code": "USD", "asset_scale": 2}).to_string(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 2, "memo": "x"}).to_string(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 300}).to_string(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "asset_code": "USD", "asset_scale": 2}).to_string(), StatusCode::BAD_REQUEST, "invalid_amount"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 1}).to_string(), StatusCode::BAD_REQUEST, "invalid_asset"),
        // XYZ is shaped as a custom asset's code, and no account holds it.
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "XYZ", "asset_scale": 2}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "transfer_must_have_the_same_asset_as_accounts"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "XY1", "asset_scale": 2}).to_string(), StatusCode::BAD_REQUEST, "invalid_asset"),
        (Method::POST, "/v1/accounts".into(), json!({"id": "41", "asset_code": "XYZ", "asset_scale": 2}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "asset_not_registered"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD"}).to_string(), StatusCode::BAD_REQUEST, "invalid_asset"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 2, "flags": ["turbo"]}).to_string(), StatusCode::BAD_REQUEST, "invalid_flag"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("0", "1", "2", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "id_must_not_be_zero"),
        (Method::POST, "/v1/transfers".into(), usd_transfer(&u128::MAX.to_string(), "1", "2", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "id_must_not_be_int_max"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("340282366920938463463374607431768211456", "1", "2", "1").to_string(), StatusCode::BAD_REQUEST, "invalid_id"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("-5", "1", "2", "1").to_string(), StatusCode::BAD_REQUEST, "invalid_id"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("40", "0", "2", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "debit_account_id_must_not_be_zero"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("40", "1", &u128::MAX.to_string(), "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "credit_account_id_must_not_be_int_max"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("40", "99", "2", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "debit_account_not_found"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("40", "1", "99", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "credit_account_not_found"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("40", "1", "3", "1").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "accounts_must_have_the_same_asset"),
        (Method::POST, "/v1/transfers".into(), json!({"id": "40", "debit_account_id": "1", "credit_account_id": "2", "amount": "1", "asset_code": "EUR", "asset_scale": 2}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "transfer_must_have_the_same_asset_as_accounts"),
        (Method::POST, "/v1/transfers".into(), usd_transfer("10", "1", "2", "999").to_string(), StatusCode::CONFLICT, "exists_with_different_amount"),
        (Method::POST, "/v1/accounts".into(), json!({"id": "0", "asset_code": "USD", "asset_scale": 2}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "id_must_not_be_zero"),
        (Method::POST, "/v1/accounts".into(), json!({"id": u128::MAX.to_string(), "asset_code": "USD", "asset_scale": 2}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "id_must_not_be_int_max"),
        (Method::POST, "/v1/accounts".into(), json!({"id": "50", "asset_code": "KRW", "asset_scale": 19}).to_string(), StatusCode::BAD_REQUEST, "invalid_asset"),
        (Method::POST, "/v1/accounts".into(), json!({"id": "50", "asset_code": "USD", "asset_scale": 2, "user_data_64": "18446744073709551616"}).to_string(), StatusCode::BAD_REQUEST, "invalid_id"),
        (Method::POST, "/v1/accounts".into(), json!({"id": "50", "asset_code": "USD", "asset_scale": 2, "balance": "100"}).to_string(), StatusCode::BAD_REQUEST, "json_schema"),
        (Method::POST, "/v1/accounts/batch".into(), json!({"accounts": []}).to_string(), StatusCode::BAD_REQUEST, "batch_size"),
        (Method::POST, "/v1/transfers/batch".into(), json!({"transfers": [usd_transfer("41", "1", "2", "1"), usd_transfer("42", "1", "2", "1e3")]}).to_string(), StatusCode::BAD_REQUEST, "invalid_amount"),
        (Method::GET, "/v1/accounts/abc".into(), String::new(), StatusCode::BAD_REQUEST, "invalid_id"),
        (Method::GET, "/v1/accounts/99".into(), String::new(), StatusCode::NOT_FOUND, "account_not_found"),
        (Method::GET, "/v1/transfers/99".into(), String::new(), StatusCode::NOT_FOUND, "transfer_not_found"),
        (Method::GET, "/v1/accounts/1/history?limit=0".into(), String::new(), StatusCode::BAD_REQUEST, "invalid_query"),
        (Method::GET, "/v1/accounts/1/history?limit=x".into(), String::new(), StatusCode::BAD_REQUEST, "invalid_query"),
        (Method::GET, "/v1/accounts/1/history?after=-1".into(), String::new(), StatusCode::BAD_REQUEST, "invalid_query"),
        (Method::GET, "/v1/nothing".into(), String::new(), StatusCode::NOT_FOUND, "route_not_found"),
        (Method::DELETE, "/v1/accounts/1".into(), String::new(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for amount in ["2^64", "-1", "1e3", "", "0x10", "1.5", " 1", "01", "340282366920938463463374607431768211456"] {
        cases.push((Method::POST, "/v1/transfers".into(), t(amount), StatusCode::BAD_REQUEST, "invalid_amount"));
    }
    let too_many: Vec<Value> = (0..8191).map(|i| usd_transfer(&(100_000 + i).to_string(), "1", "2", "1")).collect();
    cases.push((
        Method::POST,
        "/v1/transfers/batch".into(),
        json!({"transfers": too_many}).to_string(),
        StatusCode::BAD_REQUEST,
        "batch_size",
    ));
    let oversize = format!("{{\"id\": \"40\", \"pad\": \"{}\"}}", "x".repeat(obol_http::BODY_BYTES_MAX));
    cases.push((Method::POST, "/v1/transfers".into(), oversize, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_with_a_stable_code_and_writes_nothing() {
    bad_input(spawn_app()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_with_a_stable_code_and_writes_nothing_on_postgres() {
    if let Some(app) = spawn_app_on_postgres() {
        bad_input(app).await;
    }
}

async fn bad_input(app: TestApp) {
    app.accounts().await;
    assert_eq!(app.post("/v1/transfers", usd_transfer("10", "1", "2", "5")).await.0, StatusCode::CREATED);
    for (method, path, body, status, code) in corpus() {
        let before = app.snapshot();
        let body = (!body.is_empty()).then_some(body.as_str());
        let (got_status, content_type, problem) = app.send(method.clone(), &path, body).await;
        let shown: String = format!("{method} {path} {}", body.unwrap_or("").chars().take(120).collect::<String>());
        assert_eq!(got_status, status, "{shown}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{shown}");
        assert_eq!(problem["code"], code, "{shown}: {problem}");
        assert_eq!(problem["status"], status.as_u16(), "{shown}");
        assert_eq!(problem["type"], format!("urn:obol:problem:{code}"), "{shown}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{shown}");
        assert_eq!(app.snapshot(), before, "{shown} changed the ledger");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_needs_a_valid_key() {
    let app = spawn_app();
    let keyed = |path: &&str| path.starts_with("/v1/") && !obol_http::PUBLIC_V1_ROUTES.contains(path);
    for (method, path) in obol_http::ROUTES.iter().filter(|(_, path)| keyed(path)) {
        let method: Method = method.parse().unwrap();
        let path = path.replace("{id}", "1").replace("{key_id}", "0000000000000000");
        for authorization in [None, Some("Bearer obol_live_0000000000000000_00"), Some("Basic abc"), Some("Bearer ")] {
            let mut builder = Request::builder().method(method.clone()).uri(&path);
            if let Some(value) = authorization {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            let (status, content_type, problem) = app.raw(builder.body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {authorization:?}");
            assert_eq!(content_type, "application/problem+json");
            assert_eq!(problem["code"], "unauthorized");
        }
    }
    for open in ["/healthz", "/readyz", "/metrics"] {
        let (status, _, _) = app.raw(Request::get(open).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_3_1_and_lists_every_route() {
    let app = spawn_app();
    let (status, document) = app.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/accounts",
        "/v1/accounts/batch",
        "/v1/accounts/{id}",
        "/v1/accounts/{id}/balance",
        "/v1/accounts/{id}/history",
        "/v1/transfers",
        "/v1/transfers/batch",
        "/v1/transfers/{id}",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_described_and_every_keyed_route_documents_401_403_and_429() {
    let app = spawn_app();
    let (_, document) = app.get("/v1/openapi.json").await;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let answers = operation["responses"].as_object().unwrap();
            for (status, answer) in answers {
                let description = answer["description"].as_str().unwrap_or_default();
                assert!(!description.trim().is_empty(), "{method} {path} {status} has no description");
            }
            let keyed = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            let mut expected = vec!["429", "500"];
            if keyed {
                expected.extend(["401", "403"]);
            }
            for status in expected {
                assert!(answers.contains_key(status), "{method} {path} does not document {status}");
            }
            if let Some(limited) = answers.get("429") {
                assert!(limited["headers"]["Retry-After"].is_object(), "{method} {path}: 429 names Retry-After");
                assert_eq!(
                    limited["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem"
                );
            }
        }
    }
    assert!(operations > 50, "{operations} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_a_5xx_body_names_the_same_one() {
    let app = spawn_app();
    let response = app.router.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    let first = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!first.is_empty());
    let response = app.router.clone().oneshot(Request::get("/nowhere").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let second = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(first, second, "each request gets its own id");
    // A client's own sensible id is echoed; an odd one (too long, or with spaces) is replaced.
    let echoed = app
        .router
        .clone()
        .oneshot(Request::get("/v1/accounts/1").header("x-request-id", "trace-42.a:b_c").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.a:b_c");
    for odd in ["has space", &"x".repeat(65)] {
        let replaced = app
            .router
            .clone()
            .oneshot(Request::get("/healthz").header("x-request-id", odd).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_ne!(replaced.headers()["x-request-id"].to_str().unwrap(), odd);
    }
    // A 5xx body carries the request id of its answer: stop the engine, and a write is refused
    // with 503 whose body names the id in the header.
    app.engine.clone().shutdown();
    let refused = app
        .router
        .clone()
        .oneshot(
            Request::post("/v1/accounts")
                .header(header::AUTHORIZATION, format!("Bearer {}", app.key))
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-request-id", "incident-7")
                .body(Body::from(json!({"id": "9", "asset_code": "USD", "asset_scale": 2}).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(refused.status().is_server_error(), "{}", refused.status());
    assert_eq!(refused.headers()["x-request-id"], "incident-7");
    let body = axum::body::to_bytes(refused.into_body(), 1 << 20).await.unwrap();
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["request_id"], "incident-7", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_requests_latency_batches_and_fsync_time() {
    let app = spawn_app();
    app.accounts().await;
    let (_, _, text) = app.raw(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = text.as_str().unwrap().to_string();
    for metric in [
        "obol_http_requests_total",
        "obol_http_request_duration_seconds_bucket",
        "obol_batch_events_bucket",
        "obol_store_append_seconds_bucket",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_custom_asset_moves_like_a_currency_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(unique("obol-assets"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut node = Node::open(SqliteStore::open(&dir).unwrap(), 5).unwrap();
    let key = bootstrap_operator(&mut node, &obol_app::SystemEnv).unwrap().unwrap();
    let engine = Engine::start(node);
    // The first life's place removes nothing: the directory outlives it.
    let first_life = Place::Dir(std::env::temp_dir().join(unique("obol-assets-nothing")));
    let world =
        TestApp { router: app(AppState::new(engine.clone(), "http")), key: key.clone(), engine, _place: first_life };
    let gems = |id: &str, scale: u8| json!({"id": id, "asset_code": "GEM", "asset_scale": scale});
    // Before registration, no account takes the code.
    let (status, refused) = world.post("/v1/accounts", gems("1", 0)).await;
    assert_eq!((status, refused["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("asset_not_registered")));
    let register = json!({"code": "GEM", "scale": 0, "description": "Gems in Castle Quest"});
    let (status, registered) = world.post("/v1/assets", register.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!((registered["code"].as_str(), registered["scale"].as_u64()), (Some("GEM"), Some(0)));
    assert_eq!(world.post("/v1/assets", register.clone()).await.0, StatusCode::OK, "the same again is harmless");
    let mut changed = register.clone();
    changed["scale"] = json!(2);
    let (status, conflict) = world.post("/v1/assets", changed).await;
    assert_eq!((status, conflict["code"].as_str()), (StatusCode::CONFLICT, Some("asset_exists")));
    for (code, expected) in
        [("USD", "invalid_asset"), ("XAU", "invalid_asset"), ("gem", "invalid_asset"), ("GEMS", "invalid_asset")]
    {
        let (status, problem) = world.post("/v1/assets", json!({"code": code, "scale": 0, "description": "no"})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some(expected)), "{code}: {problem}");
    }
    let (status, empty) = world.post("/v1/assets", json!({"code": "PTS", "scale": 0, "description": " "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{empty}");

    for id in ["1", "2"] {
        assert_eq!(world.post("/v1/accounts", gems(id, 0)).await.0, StatusCode::CREATED);
    }
    assert_eq!(world.post("/v1/accounts", gems("3", 2)).await.0, StatusCode::CREATED, "finer than registered is fine");
    let (status, usd) = world.post("/v1/accounts", json!({"id": "4", "asset_code": "USD", "asset_scale": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{usd}");
    let move_gems = json!({"id": "10", "debit_account_id": "1", "credit_account_id": "2", "amount": "7",
        "asset_code": "GEM", "asset_scale": 0});
    assert_eq!(world.post("/v1/transfers", move_gems).await.0, StatusCode::CREATED);
    let across = json!({"id": "11", "debit_account_id": "1", "credit_account_id": "4", "amount": "7",
        "asset_code": "GEM", "asset_scale": 0});
    assert!(world.post("/v1/transfers", across).await.0.is_client_error(), "gems never pay a dollar account");
    let (_, balance) = world.get("/v1/accounts/2/balance").await;
    assert_eq!((balance["credits_posted"].as_str(), balance["asset_code"].as_str()), (Some("7"), Some("GEM")));
    let (_, listed) = world.get("/v1/assets").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // The registry is in the log: after a restart it is there, and so are the accounts.
    let TestApp { engine, .. } = world;
    engine.shutdown();
    let node = Node::open(SqliteStore::open(&dir).unwrap(), 5).unwrap();
    let engine = Engine::start(node);
    let world = TestApp { router: app(AppState::new(engine.clone(), "http")), key, engine, _place: Place::Dir(dir) };
    let (_, listed) = world.get("/v1/assets").await;
    assert_eq!(listed[0]["description"], "Gems in Castle Quest");
    assert_eq!(world.post("/v1/accounts", gems("5", 0)).await.0, StatusCode::CREATED);
    let (_, balance) = world.get("/v1/accounts/2/balance").await;
    assert_eq!(balance["credits_posted"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_page_is_served_with_its_renderer_and_no_key() {
    let app = spawn_app();
    let (status, _, page) = app.raw(Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap_or_default().to_string();
    assert!(page.contains("swagger-ui-bundle.js"), "{page}");
    // Every script and stylesheet the page loads is served from obol itself: no CDN.
    assert!(!page.contains("https://") && !page.contains("http://"), "{page}");
    let (status, _, initializer) =
        app.raw(Request::get("/docs/swagger-initializer.js").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(initializer.as_str().unwrap_or_default().contains("\"/v1/openapi.json\""), "{initializer}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"] {
        let response = app
            .router
            .clone()
            .oneshot(Request::get(format!("/docs/{asset}")).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert!(bytes.len() > 10_000, "{asset} is the real renderer, {} bytes", bytes.len());
    }
}
