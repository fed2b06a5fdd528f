// Sign-in: a passkey (the person gives their principal id, the browser signs the server's
// challenge), or an API key with the TOTP code once one is set up. Either opens a session whose
// cookie the script never sees.
import { useState } from "preact/hooks";
import { api, post } from "./api.js";
import { t } from "./i18n.js";
import { ProblemBox } from "./ui.jsx";
import { passkeysAvailable, signWithPasskey } from "./webauthn.js";

export function SignIn({ onSignedIn }) {
  const [principal, setPrincipal] = useState(localStorage.getItem("obol.principal") ?? "");
  const [apiKey, setApiKey] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const run = async (work) => {
    setBusy(true);
    setError(null);
    try {
      await onSignedIn(await work());
    } catch (e) {
      if (e.code === "second_factor_required") setNeedCode(true);
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const withPasskey = (event) => {
    event.preventDefault();
    run(async () => {
      const started = await post("/v1/sessions/passkey", { principal_id: principal.trim() });
      const credential = await signWithPasskey(started.options);
      const opened = (await api("POST", "/v1/sessions", { passkey: { ceremony_id: started.ceremony_id, credential } })).body;
      localStorage.setItem("obol.principal", principal.trim());
      return opened;
    });
  };

  const withKey = (event) => {
    event.preventDefault();
    const body = { api_key: apiKey.trim() };
    if (code.trim()) body.code = code.trim();
    run(async () => (await api("POST", "/v1/sessions", body)).body);
  };

  return (
    <div class="signin">
      <h1>{t("sign_in")}</h1>
      <ProblemBox error={error} />
      {passkeysAvailable() && (
        <form onSubmit={withPasskey} class="card" aria-labelledby="passkey-title">
          <h2 id="passkey-title">{t("sign_in_passkey")}</h2>
          <label for="principal">{t("principal_id")}</label>
          <input id="principal" name="principal" inputMode="numeric" autoComplete="username webauthn" required
            value={principal} onInput={(e) => setPrincipal(e.currentTarget.value)} />
          <button type="submit" class="primary" disabled={busy}>{t("sign_in_passkey_button")}</button>
        </form>
      )}
      <form onSubmit={withKey} class="card" aria-labelledby="key-title">
        <h2 id="key-title">{t("sign_in_key")}</h2>
        <label for="api-key">{t("api_key")}</label>
        <input id="api-key" name="api-key" type="password" autoComplete="off" required spellcheck={false}
          value={apiKey} onInput={(e) => setApiKey(e.currentTarget.value)} />
        <label for="totp">{needCode ? t("totp_code") : t("totp_code_if_set")}</label>
        <input id="totp" name="totp" inputMode="numeric" autoComplete="one-time-code" required={needCode}
          value={code} onInput={(e) => setCode(e.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy}>{t("sign_in_button")}</button>
      </form>
    </div>
  );
}
