//! Audit routes: the signed checkpoint (C2SP `tlog-checkpoint`, as text), the log's verifier
//! key, entries with their inclusion proofs, consistency proofs between two sizes, and export
//! pages. Each parses, calls one use case of `obol_app::audit`, and maps its answer.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use obol_app::audit;
use obol_app::auth::Caller;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, Error, Problem};

fn text(body: String, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn index(text: &str) -> Result<u64, Error> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidField(format!("entry index {text:?}: a decimal number from 0")));
    }
    text.parse().map_err(|_| Error::InvalidField(format!("entry index {text:?} is too large")))
}

/// A tree size to answer for.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SizeQuery {
    /// Tree size (default: the whole log).
    pub size: Option<u64>,
}

/// The log's signed checkpoint: a C2SP signed note (origin, size, base64 root, a blank line,
/// the signature line). `?size=` signs the head of an earlier size.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", params(SizeQuery),
    responses((status = 200, description = "Signed note", content_type = "text/plain"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<SizeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = crate::list_query(query)?;
    Ok(text(audit::checkpoint(&state, &caller, query.size)?, "text/plain; charset=utf-8"))
}

/// The key checkpoints verify under, as a note verifier key (`origin+hash+base64 key`): pin it
/// once, out of band, and pass it to `obol audit verify --key`.
#[utoipa::path(get, path = "/v1/audit/key", tag = "audit",
    responses((status = 200, description = "Verifier key", content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn key(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    obol_app::authz::need_scope(&caller, obol_core::identity::Scopes::READ)?;
    Ok(text(format!("{}\n", state.audit_key.verifier_key()), "text/plain; charset=utf-8"))
}

/// One audit entry.
#[derive(Serialize, ToSchema)]
pub struct EntryDto {
    /// 0-based position (record `index + 1`).
    pub index: u64,
    /// The entry's canonical JSON, exactly the bytes its leaf hashes.
    #[schema(value_type = Object)]
    pub entry: Box<serde_json::value::RawValue>,
    /// `SHA-256(0x00 || entry)`, hex.
    pub leaf_hash: String,
}

/// Entry `index` of the audit log (operator and auditors).
#[utoipa::path(get, path = "/v1/audit/entries/{index}", tag = "audit",
    params(("index" = String, Path, description = "0-based entry index")),
    responses((status = 200, body = EntryDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn entry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(index_text): UrlPath<String>,
) -> Result<Json<EntryDto>, ApiError> {
    let view = audit::entry(&state, &caller, index(&index_text)?)?;
    let entry = serde_json::value::RawValue::from_string(view.entry)
        .map_err(|e| Error::Internal(format!("audit entry is not JSON: {e}")))?;
    Ok(Json(EntryDto { index: view.index, entry, leaf_hash: view.leaf_hash }))
}

/// An inclusion proof (RFC 9162 section 2.1.3).
#[derive(Serialize, ToSchema)]
pub struct InclusionDto {
    /// The entry.
    pub index: u64,
    /// Tree size the proof is for.
    pub size: u64,
    /// The entry's leaf hash, hex.
    pub leaf_hash: String,
    /// Root at `size`, base64 (as the checkpoint prints it).
    pub root: String,
    /// Audit path, bottom up, base64.
    pub path: Vec<String>,
}

/// The proof that entry `index` is in the tree of `size` entries (operator and auditors).
#[utoipa::path(get, path = "/v1/audit/entries/{index}/proof", tag = "audit",
    params(("index" = String, Path, description = "0-based entry index"), SizeQuery),
    responses((status = 200, body = InclusionDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn inclusion(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(index_text): UrlPath<String>,
    query: Result<Query<SizeQuery>, QueryRejection>,
) -> Result<Json<InclusionDto>, ApiError> {
    let query = crate::list_query(query)?;
    let view = audit::inclusion(&state, &caller, index(&index_text)?, query.size)?;
    Ok(Json(InclusionDto {
        index: view.index,
        size: view.size,
        leaf_hash: view.leaf_hash,
        root: view.root,
        path: view.path,
    }))
}

/// Two tree sizes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older size.
    pub from: u64,
    /// The newer size (default: the whole log).
    pub to: Option<u64>,
}

/// A consistency proof (RFC 9162 section 2.1.4).
#[derive(Serialize, ToSchema)]
pub struct ConsistencyDto {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Root at `from`, base64.
    pub from_root: String,
    /// Root at `to`, base64.
    pub to_root: String,
    /// The proof, base64.
    pub proof: Vec<String>,
}

/// The proof that the log's first `from` entries are a prefix of its first `to`: what a holder
/// of an old checkpoint asks to see that no history was rewritten.
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyDto), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyDto>, ApiError> {
    let query = crate::list_query(query)?;
    let view = audit::consistency(&state, &caller, query.from, query.to)?;
    Ok(Json(ConsistencyDto {
        from: view.from,
        to: view.to,
        from_root: view.from_root,
        to_root: view.to_root,
        proof: view.proof,
    }))
}

/// A range of entries.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First entry.
    pub from: u64,
    /// One past the last entry (at most 4096 after `from`).
    pub to: u64,
}

/// Entries `[from, to)` as JSON lines (`{"index","leaf","entry"}`), with a signed checkpoint
/// line (`{"checkpoint"}`) after every 256th entry and after the last: the pages of the file
/// `obol audit export` writes and `obol audit verify` checks (operator and auditors).
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, description = "JSON lines", content_type = "application/x-ndjson"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = crate::list_query(query)?;
    Ok(text(audit::export_page(&state, &caller, query.from, query.to)?, "application/x-ndjson"))
}
