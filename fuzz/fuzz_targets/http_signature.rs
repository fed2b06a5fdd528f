//! Any header text: the RFC 9421 `Signature-Input` and `Signature` parsers answer an error or a
//! value, never panic; what parses builds a signature base without a panic; and an input obol
//! itself writes (with fuzzed component names, created time and nonce) parses back to the same
//! fields and base.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use obol_wire::httpsig::{Message, parse_signature, parse_signature_input, sign_request, signature_base};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (input_text, signature_text) = text.split_once('\n').unwrap_or((text, text));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("a header value"));
    let message = Message {
        method: "POST",
        scheme: "https",
        authority: "obol.test",
        path: "/v1/transfers",
        query: Some("a=1"),
        headers: &headers,
    };
    if let Ok(inputs) = parse_signature_input(input_text) {
        for input in &inputs {
            let _ = signature_base(input, &message);
            let _ = parse_signature(signature_text, &input.label);
        }
    }
    // What obol signs, it reads back exactly.
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let created = i64::from(data.first().copied().unwrap_or(0)) * 1_000_000;
    let nonce: String = text.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    let components = ["@method", "@target-uri", "content-type"];
    let (input, signature) =
        sign_request(&key, "meter", &components, created, Some(nonce.as_str()).filter(|n| !n.is_empty()), &message)
            .expect("obol signs any created time and alphanumeric nonce");
    let parsed = parse_signature_input(&input).expect("obol's own Signature-Input parses");
    assert_eq!(parsed.len(), 1);
    let first = &parsed[0];
    assert_eq!((first.created_s, first.keyid.as_str()), (created, "meter"));
    assert_eq!(first.components, components);
    assert_eq!(first.nonce.as_deref(), Some(nonce.as_str()).filter(|n| !n.is_empty()));
    assert_eq!(parse_signature(&signature, &first.label).expect("obol's own Signature parses").len(), 64);
    signature_base(first, &message).expect("a base for obol's own input");
});
