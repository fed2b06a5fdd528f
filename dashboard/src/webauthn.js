// Passkeys in the browser: obol's ceremonies send webauthn-rs options ({"publicKey": {...}}, byte
// fields in base64url), and take the credential back as the standard WebAuthn JSON.

export function passkeysAvailable() {
  return typeof PublicKeyCredential !== "undefined" && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
}

/** Creates a passkey for registration `options`; answers the credential's JSON. */
export async function createPasskey(options) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
  const credential = await navigator.credentials.create({ publicKey });
  return credential.toJSON();
}

/** Signs assertion `options` with a passkey; answers the assertion's JSON. */
export async function signWithPasskey(options) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
  const credential = await navigator.credentials.get({ publicKey });
  return credential.toJSON();
}
