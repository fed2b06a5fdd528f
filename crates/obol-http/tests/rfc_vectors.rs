//! Goal: obol's signature, digest and key code agrees byte for byte with the RFC texts.
//! Method: the published vectors of RFC 9421 appendix B.2.6 (Ed25519 request signature, key
//! B.1.4), RFC 9530 (sha-512 Content-Digest of the B.2 body), and RFC 8037 appendix A (Ed25519
//! JWK, thumbprint and JWS signature), each checked in both directions where it has two.

use axum::http::{HeaderMap, HeaderValue};
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_http::httpsig::{
    Message, check_content_digest, content_digest, parse_jwk, parse_signature, parse_signature_input, signature_base,
    thumbprint, verify_ed25519,
};
use serde_json::json;

const B2_BODY: &str = r#"{"hello": "world"}"#;
const B2_DIGEST: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
const B26_INPUT: &str = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
const B26_SIGNATURE: &str =
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";
const B14_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
const B14_D: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";
const B26_BASE: &str = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";

fn b2_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("example.com"));
    headers.insert("date", HeaderValue::from_static("Tue, 20 Apr 2021 02:07:55 GMT"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-digest", HeaderValue::from_static(B2_DIGEST));
    headers.insert("content-length", HeaderValue::from_static("18"));
    headers
}

fn b2_message(headers: &HeaderMap) -> Message<'_> {
    Message {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
        headers,
    }
}

fn key32(b64url: &str) -> [u8; 32] {
    Base64UrlUnpadded::decode_vec(b64url).unwrap().try_into().unwrap()
}

#[test]
fn rfc9421_b26_signature_base_and_signature_verify() {
    let headers = b2_headers();
    let inputs = parse_signature_input(B26_INPUT).unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].label, "sig-b26");
    assert_eq!(inputs[0].keyid, "test-key-ed25519");
    assert_eq!(inputs[0].created_s, 1618884473);
    let base = signature_base(&inputs[0], &b2_message(&headers)).unwrap();
    assert_eq!(base, B26_BASE);
    let signature = parse_signature(B26_SIGNATURE, "sig-b26").unwrap();
    verify_ed25519(&key32(B14_X), &base, &signature).unwrap();
    let mut tampered = signature.clone();
    tampered[10] ^= 1;
    assert!(verify_ed25519(&key32(B14_X), &base, &tampered).is_err());
    assert!(verify_ed25519(&key32(B14_X), &base.replace("POST", "GET"), &signature).is_err());
}

#[test]
fn rfc9421_b26_signing_with_the_b14_private_key_reproduces_the_signature() {
    let signing_key = SigningKey::from_bytes(&key32(B14_D));
    assert_eq!(signing_key.verifying_key().to_bytes(), key32(B14_X));
    let signature = signing_key.sign(B26_BASE.as_bytes());
    assert_eq!(signature.to_bytes().to_vec(), parse_signature(B26_SIGNATURE, "sig-b26").unwrap());
}

#[test]
fn a_bare_base64_signature_is_accepted_like_the_dictionary_form() {
    let bare = B26_SIGNATURE.trim_start_matches("sig-b26=").trim_matches(':');
    assert_eq!(parse_signature(bare, "sig1").unwrap(), parse_signature(B26_SIGNATURE, "sig-b26").unwrap());
}

#[test]
fn rfc9530_content_digest_of_the_b2_body() {
    assert_eq!(content_digest(B2_BODY.as_bytes()), B2_DIGEST);
    check_content_digest(Some(B2_DIGEST), B2_BODY.as_bytes()).unwrap();
    assert!(check_content_digest(Some(B2_DIGEST), br#"{"hello": "World"}"#).is_err());
    assert!(check_content_digest(None, B2_BODY.as_bytes()).is_err());
    assert!(
        check_content_digest(Some("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"), B2_BODY.as_bytes())
            .is_err()
    );
}

#[test]
fn rfc8037_appendix_a_key_thumbprint_and_signature() {
    // A.1 / A.2: the key pair.
    let d = key32("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let signing_key = SigningKey::from_bytes(&d);
    assert_eq!(signing_key.verifying_key().to_bytes(), key32(x));
    // A.3: the RFC 7638 thumbprint.
    assert_eq!(thumbprint(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    let jwk = parse_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x})).unwrap();
    assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    assert_eq!(jwk.public_key, key32(x));
    // A.4 / A.5: signing and verifying the JWS input.
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let expected = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    assert_eq!(Base64UrlUnpadded::encode_string(&signing_key.sign(input.as_bytes()).to_bytes()), expected);
    let signature = Base64UrlUnpadded::decode_vec(expected).unwrap();
    verify_ed25519(&key32(x), input, &signature).unwrap();
}

#[test]
fn jwks_that_are_not_public_ed25519_keys_are_refused() {
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    for (jwk, why) in [
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}),
            "private",
        ),
        (json!({"kty": "OKP", "crv": "X25519", "x": x}), "kty OKP and crv Ed25519"),
        (json!({"kty": "EC", "crv": "P-256", "x": x}), "kty OKP and crv Ed25519"),
        (json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}), "32 bytes"),
        (json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}), "base64url"),
        (json!({"kty": "OKP", "crv": "Ed25519"}), "no x"),
    ] {
        let error = parse_jwk(&jwk).unwrap_err();
        assert!(error.contains(why), "{jwk}: {error}");
    }
}
