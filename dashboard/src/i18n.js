// The dashboard's words come from obol's message catalogue (crates/obol-app/messages/*.toml,
// served at /app/messages/{lang}.json): the `[ui]` table for labels and the per-code
// explanations the API gives, so a refusal reads the same on the page as in the API.
import { setLanguage } from "./api.js";

export const LANGUAGES = [
  ["en", "English"],
  ["ko", "한국어"],
];

let catalogue = { lang: "en", ui: {}, messages: {} };

export function chosenLanguage() {
  const stored = localStorage.getItem("obol.lang");
  if (LANGUAGES.some(([lang]) => lang === stored)) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("ko") ? "ko" : "en";
}

/** Loads `lang`'s catalogue and makes it the page's language. */
export async function loadLanguage(lang) {
  const response = await fetch(`/app/messages/${lang}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`messages ${lang}: HTTP ${response.status}`);
  catalogue = await response.json();
  localStorage.setItem("obol.lang", lang);
  document.documentElement.lang = lang;
  setLanguage(lang);
  return catalogue;
}

/** The words for `key`, with `{name}` replaced from `vars`; the key itself when missing (the
 * catalogue test keeps every key in every language). */
export function t(key, vars) {
  let text = catalogue.ui[key] ?? key;
  if (vars) for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

/** The explanation of a code: `{what, next}`, or null when the catalogue has none. */
export function explanation(code) {
  return (code && catalogue.messages[code]) || null;
}

/** Dates and times in the page's language. */
export function when(value) {
  if (value === undefined || value === null || value === "") return "";
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(catalogue.lang === "ko" ? "ko-KR" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
}
