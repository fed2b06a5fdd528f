// The dashboard: one page per role over the /v1 API, signed in with a passkey or an API key (and
// TOTP) into a session cookie. Every value from the server is rendered as text by Preact (never
// as markup), and the page's policy forbids inline script and script sinks outright.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, get, setCsrf } from "./api.js";
import { LANGUAGES, chosenLanguage, loadLanguage, t } from "./i18n.js";
import { ProblemBox } from "./ui.jsx";
import { SignIn } from "./signin.jsx";
import { Holder } from "./holder.jsx";
import { Merchant } from "./merchant.jsx";
import { Analyst } from "./analyst.jsx";
import { Auditor } from "./auditor.jsx";

/** The pages each role sees, first one first. */
const PAGES_OF = {
  holder: ["holder"],
  merchant: ["merchant"],
  analyst: ["analyst"],
  auditor: ["auditor"],
  operator: ["analyst", "auditor"],
};

const PAGE_COMPONENTS = { holder: Holder, merchant: Merchant, analyst: Analyst, auditor: Auditor };

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function LanguagePicker({ lang, onChange }) {
  return (
    <label class="lang">
      <span class="visually-hidden">{t("language")}</span>
      <select value={lang} onChange={(e) => onChange(e.currentTarget.value)} aria-label={t("language")}>
        {LANGUAGES.map(([code, name]) => (
          <option value={code} lang={code}>
            {name}
          </option>
        ))}
      </select>
    </label>
  );
}

function App() {
  const [lang, setLang] = useState(null);
  const [session, setSession] = useState(undefined);
  const [me, setMe] = useState(null);
  const [error, setError] = useState(null);
  const hash = useHash();

  const changeLanguage = async (next) => {
    try {
      await loadLanguage(next);
      setLang(next);
    } catch (e) {
      setError(e);
    }
  };

  const signedIn = async (opened) => {
    setCsrf(opened.csrf_token);
    setSession(opened);
    setMe(await get("/v1/me"));
  };

  useEffect(() => {
    (async () => {
      await changeLanguage(chosenLanguage());
      try {
        await signedIn(await get("/v1/session"));
      } catch {
        setCsrf("");
        setSession(null);
      }
    })();
  }, []);

  const signOut = async () => {
    try {
      await api("DELETE", "/v1/session");
    } catch {
      // Already ended: the page signs out either way.
    }
    setCsrf("");
    setSession(null);
    setMe(null);
    location.hash = "";
  };

  const pages = session ? PAGES_OF[session.role] ?? [] : [];
  const wanted = hash.replace(/^#\/?/, "").split("/")[0];
  const page = pages.includes(wanted) ? wanted : pages[0];
  const Page = PAGE_COMPONENTS[page];
  useEffect(() => {
    if (lang) document.title = session ? `${t(`page.${page}`)} · obol` : `${t("sign_in")} · obol`;
  });
  if (!lang || session === undefined) return <main id="main"><p class="muted">obol</p></main>;

  return (
    <>
      <a class="skip" href="#main">
        {t("skip_to_content")}
      </a>
      <header>
        <span class="brand">obol</span>
        {session && (
          <nav aria-label={t("pages")}>
            {pages.map((p) => (
              <a href={`#/${p}`} aria-current={p === page ? "page" : undefined}>
                {t(`page.${p}`)}
              </a>
            ))}
          </nav>
        )}
        <span class="spacer" />
        <LanguagePicker lang={lang} onChange={changeLanguage} />
        {session && (
          <>
            <span class="who" data-principal={session.principal_id}>
              {t(`role.${session.role}`)} {session.principal_id}
            </span>
            <button type="button" onClick={signOut}>
              {t("sign_out")}
            </button>
          </>
        )}
      </header>
      <main id="main" tabindex="-1">
        <ProblemBox error={error} />
        {!session && <SignIn onSignedIn={signedIn} />}
        {session && me && Page && <Page key={`${page}-${lang}`} session={session} me={me} />}
        {session && !Page && <p>{t("no_page_for_role")}</p>}
      </main>
    </>
  );
}

render(<App />, document.getElementById("root"));
