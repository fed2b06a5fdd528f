// Sign-in: an API key with the TOTP code once one is set up. It opens a session whose cookie the
// script never sees.
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { t } from "./i18n.js";
import { ProblemBox } from "./ui.jsx";

export function SignIn({ onSignedIn }) {
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
