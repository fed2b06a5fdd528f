"""Independent implementations that obol's tests cross-check against (run by crates/obol/tests/interop.rs).

Usage:
  interop.py totp-now SECRET_BASE32 UNIX_TIME       print pyotp's code for that time
  interop.py totp-parse OTPAUTH_URI                  print the URI as pyotp reads it (JSON)
  interop.py sign-and-pay BASE_URL KID SEED_HEX BODY sign a POST /v1/transfers with
                                                     http-message-signatures and send it; print status
  interop.py verify URL SIG_INPUT SIGNATURE DIGEST CONTENT_TYPE BODY PUBLIC_HEX
                                                     verify a signature obol made; print "verified"
"""
import json
import sys
import time

import pyotp
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import ContentDigest, HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver, algorithms


class Sha512Digest(ContentDigest):
    """obol requires sha-512 Content-Digest (RFC 9530); the library defaults to sha-256."""

    algorithm = "sha-512"


def totp_now(secret, unix_time):
    print(pyotp.TOTP(secret).at(int(unix_time)))


def totp_parse(uri):
    parsed = pyotp.parse_uri(uri)
    print(json.dumps({"secret": parsed.secret, "issuer": parsed.issuer, "name": parsed.name,
                      "digits": parsed.digits, "interval": parsed.interval, "digest": parsed.digest().name}))


def sign_and_pay(base_url, kid, seed_hex, body):
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    resolver = MappingKeyResolver(public_keys={}, private_keys={kid: private_key})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    signer.content_digest_class = Sha512Digest
    request = requests.Request("POST", base_url + "/v1/transfers", data=body.encode(),
                               headers={"Content-Type": "application/json"}).prepare()
    signer.sign(request, key_id=kid, label="sig1", nonce=str(time.time_ns()),
                covered_component_ids=("@method", "@target-uri", "content-type"), body=body.encode())
    response = requests.Session().send(request)
    print(response.status_code, response.text)


def verify(url, signature_input, signature, digest, content_type, body, public_hex):
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    headers = {"Signature-Input": signature_input, "Signature": signature, "Content-Digest": digest,
               "Content-Type": content_type}
    request = requests.Request("POST", url, data=body.encode(), headers=headers).prepare()
    kid = signature_input.split('keyid="')[1].split('"')[0]
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519,
                                   key_resolver=MappingKeyResolver(public_keys={kid: public_key}, private_keys={}))
    results = verifier.verify(request, body=body.encode())
    assert len(results) == 1, results
    print("verified")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"totp-now": totp_now, "totp-parse": totp_parse, "sign-and-pay": sign_and_pay, "verify": verify}[command](*args)
