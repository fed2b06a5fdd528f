//! The web dashboard at `/app/`: its built assets (`dashboard/dist`, made by esbuild from
//! `dashboard/src`) are compiled into the binary, so `obol serve` needs nothing beside it. The
//! pages call the same `/v1` API, through a session cookie, with the same authorization; this
//! module only serves files and the message catalogue, never anyone's data.
//!
//! Every answer of the server carries the security headers of [`security_headers`]: the pages a
//! strict Content-Security-Policy (scripts and styles from this origin only, no inline code, no
//! framing, Trusted Types), the API a policy that forbids rendering or framing its JSON at all.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::Digest;

use crate::AppState;
use crate::error::{ApiError, Error};

/// The policy of the dashboard's pages: nothing but this origin's own script, style, images and
/// API; no inline script or style, no `eval`, no plug-ins, no framing, no form posts elsewhere,
/// and script sinks (`innerHTML` and the like) refused outright through Trusted Types.
pub const CSP_DASHBOARD: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// The policy of every other answer (JSON, problems, metrics): a browser must not run, render
/// into or frame anything in it.
pub const CSP_API: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// One built file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The built dashboard (`cd dashboard && npm run build`; `scripts/test` rebuilds it and fails
/// when the committed build differs from its sources).
const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../dashboard/dist/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../dashboard/dist/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../dashboard/dist/app.css"),
    },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_bytes!("../../../dashboard/dist/icon.svg") },
];

/// The dashboard's routes (outside `/v1`, so outside the API's key check and its OpenAPI
/// document, as `/docs` is).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/") }))
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route("/app/", get(|headers: HeaderMap| async move { asset("", &headers) }))
        .route("/app/messages/{file}", get(messages))
        .route("/app/{file}", get(|Path(file): Path<String>, headers: HeaderMap| async move { asset(&file, &headers) }))
}

/// A strong validator for `body`: a browser revalidates (`no-cache`) and gets 304 while the
/// binary is the same.
fn etag_of(body: &[u8]) -> String {
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// A file the dashboard serves, with its validator, made once per process.
struct Served {
    content_type: &'static str,
    body: axum::body::Bytes,
    etag: String,
}

impl Served {
    fn new(content_type: &'static str, body: axum::body::Bytes) -> Served {
        let etag = etag_of(&body);
        Served { content_type, body, etag }
    }

    /// The file, or 304 when `If-None-Match` names its validator (weak or strong) or `*`.
    fn answer(&self, headers: &HeaderMap) -> Response {
        let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|tags| {
            tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag)
        });
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, self.content_type)], self.body.clone()).into_response()
        };
        let response_headers = response.headers_mut();
        response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(value) = HeaderValue::from_str(&self.etag) {
            response_headers.insert(header::ETAG, value);
        }
        response
    }
}

/// The embedded files and each language's catalogue, hashed and serialized once.
fn files() -> &'static Vec<(String, Served)> {
    static FILES: std::sync::OnceLock<Vec<(String, Served)>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let assets = ASSETS.iter().map(|asset| {
            (asset.name.to_string(), Served::new(asset.content_type, axum::body::Bytes::from_static(asset.body)))
        });
        let catalogues = obol_app::explain::languages().filter_map(|lang| {
            let body = obol_app::explain::catalogue_json(lang)?;
            Some((format!("messages/{lang}.json"), Served::new("application/json", body.into())))
        });
        assets.chain(catalogues).collect()
    })
}

fn asset(name: &str, headers: &HeaderMap) -> Response {
    match files().iter().find(|(served, _)| served == name) {
        Some((_, served)) => served.answer(headers),
        None => ApiError(Error::RouteNotFound).into_response(),
    }
}

/// `/app/messages/{lang}.json`: the words of the pages and the explanation of every refusal
/// code, in one language, from the catalogue the API's explanations come from.
async fn messages(Path(file): Path<String>, headers: HeaderMap) -> Response {
    asset(&format!("messages/{file}"), &headers)
}

/// Adds the security headers to every answer: `nosniff`, no referrer, no framing, and a
/// Content-Security-Policy (the dashboard's for its pages, [`CSP_API`] for everything else).
/// The API reference at `/docs` keeps Swagger UI's needs (it runs inline script) and gets only
/// the framing and sniffing protections.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let policy = if path == "/app/" || path.starts_with("/app/") {
        Some(CSP_DASHBOARD)
    } else if path == "/docs" || path.starts_with("/docs/") {
        None
    } else {
        Some(CSP_API)
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(policy) = policy {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
        headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
        headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_built_and_the_page_loads_only_its_own_script_and_style() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "dashboard/dist/{} is empty", asset.name);
        }
        let page = String::from_utf8_lossy(ASSETS[0].body);
        assert!(page.contains("src=\"/app/app.js\""), "{page}");
        assert!(page.contains("href=\"/app/app.css\""), "{page}");
        assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style: {page}");
    }

    #[test]
    fn an_etag_names_the_content_and_a_matching_one_answers_304() {
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        let served = Served::new("text/plain", axum::body::Bytes::from_static(b"a"));
        let asking = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            served.answer(&headers).status()
        };
        assert_eq!(asking(&served.etag), StatusCode::NOT_MODIFIED);
        assert_eq!(asking(&format!("W/{}", served.etag)), StatusCode::NOT_MODIFIED);
        assert_eq!(asking(&format!("\"x\", {}", served.etag)), StatusCode::NOT_MODIFIED);
        assert_eq!(asking("*"), StatusCode::NOT_MODIFIED);
        assert_eq!(asking("\"other\""), StatusCode::OK);
        assert_eq!(served.answer(&HeaderMap::new()).status(), StatusCode::OK);
        let names: Vec<&str> = files().iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["", "app.js", "app.css", "icon.svg", "messages/en.json", "messages/ko.json"]);
    }
}
