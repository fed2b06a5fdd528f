//! Shared by the router tests: a fresh engine on a scratch SQLite store with its operator key,
//! and small request helpers.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use obol_http::auth::bootstrap_operator;
use obol_http::{AppState, app};
use obol_store::{Engine, Node, SqliteStore};
use serde_json::Value;
use tower::ServiceExt;

/// A directory removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running app: router, engine, the operator's key, and where it keeps its data.
pub struct Started {
    /// The router under test.
    pub router: Router,
    /// Its engine (for direct reads).
    pub engine: Engine,
    /// The state the router serves (for server tasks such as the settlement sweep).
    pub state: AppState,
    /// The bootstrap operator's key.
    pub operator: String,
    /// Removed at the end of the test.
    pub scratch: Scratch,
}

/// A fresh app on a scratch SQLite store.
pub fn start(tag: &str) -> Started {
    start_with(tag, |state| state)
}

/// A fresh app whose state `configure` adjusts first.
pub fn start_with(tag: &str, configure: impl FnOnce(AppState) -> AppState) -> Started {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "obol-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut node = Node::open(SqliteStore::open(&dir).expect("open store"), 3).expect("open node");
    let operator = bootstrap_operator(&mut node, 1).expect("bootstrap").expect("a fresh store gets an operator key");
    let engine = Engine::start(node);
    let state = configure(AppState::new(engine.clone(), "http"));
    let router = app(state.clone());
    Started { router, engine, state, operator, scratch: Scratch(dir) }
}

/// Sends a request; answers the status and the JSON body (or Null).
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// POSTs JSON with a bearer key, optionally with an `Obol-Approval`.
pub async fn post(router: &Router, key: &str, path: &str, body: Value, approval: Option<&str>) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(approval) = approval {
        builder = builder.header("obol-approval", approval);
    }
    send(router, builder.body(Body::from(body.to_string())).expect("request")).await
}
