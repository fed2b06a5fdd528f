//! Shared by the tests that run the real `obol` binary: start `obol serve` and read where it
//! listens and the operator key it prints on first start.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `obol serve`.
pub struct Launched {
    /// The process (its stdout is drained in the background).
    pub child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub base: String,
    /// The operator key, if this start created one.
    pub key: Option<String>,
}

/// Starts `obol serve ARGS` with warnings-only logging and waits until it listens.
pub fn launch<I, S>(args: I) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    launch_with(args, &[("OBOL_LOG", "warn")], Stdio::inherit())
}

/// Like [`launch`], with extra environment and a chosen stderr.
pub fn launch_with<I, S>(args: I, env: &[(&str, &str)], stderr: Stdio) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command.arg("serve").args(args).stdout(Stdio::piped()).stderr(stderr);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn obol serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut key = None;
    let base = loop {
        let line = lines.next().expect("obol serve exited before listening").expect("read stdout");
        if line.trim().starts_with("obol_live_") {
            key = Some(line.trim().to_string());
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Launched { child, base, key }
}

/// A client of a running server over real HTTP: JSON in, (status, JSON) out, with a bearer key
/// or an RFC 9421 device signature.
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Api {
    /// A client of `base`.
    pub fn new(base: &str) -> Api {
        Api { base: base.to_string(), http: reqwest::Client::new() }
    }

    async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// POSTs `body` with `key`, and `Obol-Approval` when given.
    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
        approval: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).bearer_auth(key).json(&body);
        if let Some(approval) = approval {
            request = request.header("obol-approval", approval);
        }
        Api::answer(request.send().await.expect("the server answers")).await
    }

    /// GETs `path` with `key`.
    pub async fn get(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let request = self.http.get(format!("{}{path}", self.base)).bearer_auth(key);
        Api::answer(request.send().await.expect("the server answers")).await
    }

    /// POSTs `body` signed by a device key (`kid`), as a device without an API key sends it.
    pub async fn post_signed(
        &self,
        device: &ed25519_dalek::SigningKey,
        kid: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        use reqwest::header::{HeaderMap, HeaderValue};
        let url: reqwest::Url = format!("{}{path}", self.base).parse().expect("a URL");
        let authority = format!("{}:{}", url.host_str().expect("a host"), url.port().expect("a port"));
        let bytes = body.to_string().into_bytes();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let digest = obol_http::httpsig::content_digest(&bytes);
        headers.insert("content-digest", HeaderValue::from_str(&digest).expect("a digest"));
        let message = obol_http::httpsig::Message {
            method: "POST",
            scheme: url.scheme(),
            authority: &authority,
            path: url.path(),
            query: url.query(),
            headers: &headers,
        };
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let components = ["@method", "@target-uri", "content-digest", "content-type"];
        let (input, signature) =
            obol_http::httpsig::sign_request(device, kid, &components, now_s as i64, Some(&nonce), &message)
                .expect("signing");
        headers.insert("signature-input", HeaderValue::from_str(&input).expect("input"));
        headers.insert("signature", HeaderValue::from_str(&signature).expect("signature"));
        let request = self.http.post(url).headers(headers).body(bytes);
        Api::answer(request.send().await.expect("the server answers")).await
    }

    /// Waits until `/readyz` answers 200 (or fails after 30 s).
    pub async fn ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "obol never became ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
