"""Independent implementations that obol's tests cross-check against (run by crates/obol/tests/interop.rs).

Usage:
  interop.py totp-now SECRET_BASE32 UNIX_TIME       print pyotp's code for that time
  interop.py totp-parse OTPAUTH_URI                  print the URI as pyotp reads it (JSON)
  interop.py sign-and-pay BASE_URL KID SEED_HEX BODY sign a POST /v1/transfers with
                                                     http-message-signatures and send it; print status
  interop.py verify URL SIG_INPUT SIGNATURE DIGEST CONTENT_TYPE BODY PUBLIC_HEX
                                                     verify a signature obol made; print "verified"
  interop.py webauthn-register OPTIONS_JSON ORIGIN STATE_FILE
                                                     soft-webauthn answers obol's registration options
  interop.py webauthn-assert OPTIONS_JSON ORIGIN STATE_FILE [uv|no-uv]
                                                     soft-webauthn answers obol's assertion options
  interop.py camt053-check XSD XML                   validate a statement against the ISO 20022 schema
                                                     with lxml; print its totals (JSON)
  interop.py webhook-receiver PORT SECRET OUT_FILE   receive webhooks on 127.0.0.1:PORT, verify each with
                                                     the PyPI `standardwebhooks` library, append the ids of
                                                     verified ones to OUT_FILE; answer 204, or 400 if forged
"""
import base64
import hashlib
import json
import sys
import time

import soft_webauthn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor

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


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class VerifyingSoftDevice(soft_webauthn.SoftWebauthnDevice):
    """soft-webauthn never sets the user-verified flag; obol requires it. This device sets UV
    (flags 0x45 on creation, 0x05 on assertion) and re-signs the assertion accordingly."""

    def __init__(self, verify_user=True):
        super().__init__()
        self.verify_user = verify_user

    def create(self, options, origin):
        answer = super().create(options, origin)
        if self.verify_user:
            attestation = cbor.decode(answer["response"]["attestationObject"])
            auth_data = bytearray(attestation["authData"])
            auth_data[32] = 0x45
            attestation["authData"] = bytes(auth_data)
            answer["response"]["attestationObject"] = cbor.encode(attestation)
        return answer

    def get(self, options, origin):
        answer = super().get(options, origin)
        if self.verify_user:
            auth_data = bytearray(answer["response"]["authenticatorData"])
            auth_data[32] = 0x05
            auth_data = bytes(auth_data)
            client_data_hash = hashlib.sha256(answer["response"]["clientDataJSON"]).digest()
            answer["response"]["authenticatorData"] = auth_data
            answer["response"]["signature"] = self.private_key.sign(auth_data + client_data_hash, ec.ECDSA(hashes.SHA256()))
        return answer


def to_json(answer):
    response = {key: b64url(value) for key, value in answer["response"].items() if value is not None}
    return json.dumps({"id": b64url(answer["rawId"]), "rawId": b64url(answer["rawId"]), "response": response,
                       "type": "public-key", "extensions": {}})


def save(device, path):
    pem = device.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
    state = {"key": pem.decode(), "credential_id": b64url(device.credential_id), "rp_id": device.rp_id,
             "user_handle": b64url(device.user_handle), "sign_count": device.sign_count}
    with open(path, "w") as file:
        json.dump(state, file)


def load(path, verify_user):
    with open(path) as file:
        state = json.load(file)
    device = VerifyingSoftDevice(verify_user)
    device.private_key = serialization.load_pem_private_key(state["key"].encode(), password=None)
    device.credential_id = b64url_decode(state["credential_id"])
    device.rp_id = state["rp_id"]
    device.user_handle = b64url_decode(state["user_handle"])
    device.sign_count = state["sign_count"]
    return device


def webauthn_register(options_json, origin, state_file):
    options = json.loads(options_json)
    options["publicKey"]["challenge"] = b64url_decode(options["publicKey"]["challenge"])
    options["publicKey"]["user"]["id"] = b64url_decode(options["publicKey"]["user"]["id"])
    device = VerifyingSoftDevice()
    answer = device.create(options, origin)
    save(device, state_file)
    print(to_json(answer))


def webauthn_assert(options_json, origin, state_file, mode="uv"):
    options = json.loads(options_json)
    options["publicKey"]["challenge"] = b64url_decode(options["publicKey"]["challenge"])
    device = load(state_file, mode == "uv")
    answer = device.get(options, origin)
    save(device, state_file)
    print(to_json(answer))


def camt053_check(xsd_path, xml_path):
    from decimal import Decimal
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(xsd_path))
    document = etree.parse(xml_path)
    if not schema.validate(document):
        print(json.dumps({"valid": False, "errors": [str(e) for e in schema.error_log]}))
        return
    ns = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"}

    def signed(element):
        amount = Decimal(element.find("c:Amt", ns).text)
        return amount if element.find("c:CdtDbtInd", ns).text == "CRDT" else -amount

    balances = {b.find("c:Tp/c:CdOrPrtry/c:Cd", ns).text: signed(b) for b in document.iterfind(".//c:Bal", ns)}
    entries = list(document.iterfind(".//c:Ntry", ns))
    transactions = list(document.iterfind(".//c:TxDtls", ns))
    print(json.dumps({
        "valid": True,
        "opening": str(balances["OPBD"]),
        "closing": str(balances["CLBD"]),
        "entries_sum": str(sum((signed(e) for e in entries), Decimal(0))),
        "transactions_sum": str(sum((signed(t) for t in transactions), Decimal(0))),
        "entries": len(entries),
        "transactions": len(transactions),
        "batch_counts": sum(int(e.find("c:NtryDtls/c:Btch/c:NbOfTxs", ns).text) for e in entries),
    }))


def webhook_receiver(port, secret, out_file):
    import http.server

    import standardwebhooks

    hook = standardwebhooks.Webhook(secret)

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                event = hook.verify(body, dict(self.headers.items()))
            except Exception as error:  # any refusal: a forged or altered delivery
                sys.stderr.write(f"refused: {error}\n")
                self.send_response(400)
                self.end_headers()
                return
            assert event["id"] == self.headers["webhook-id"], "the body names its own id"
            with open(out_file, "a") as out:
                out.write(f"{event['id']} {event['type']}\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(port)), Receiver)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"totp-now": totp_now, "totp-parse": totp_parse, "sign-and-pay": sign_and_pay, "verify": verify,
     "webauthn-register": webauthn_register, "webauthn-assert": webauthn_assert,
     "camt053-check": camt053_check, "webhook-receiver": webhook_receiver}[command](*args)
