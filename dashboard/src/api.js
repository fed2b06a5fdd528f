// The dashboard's only way to the server: the same /v1 API as every client, through the
// session cookie (HttpOnly, so no script can read it) and, for anything that changes state, the
// session's CSRF token in X-CSRF-Token.

let csrfToken = sessionStorage.getItem("obol.csrf") ?? "";
let language = "en";

export function setCsrf(token) {
  csrfToken = token ?? "";
  if (csrfToken) sessionStorage.setItem("obol.csrf", csrfToken);
  else sessionStorage.removeItem("obol.csrf");
}

export function setLanguage(lang) {
  language = lang;
}

/** A refusal from the API: its RFC 9457 problem, with the code and the explanation. */
export class Problem extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.body = body ?? {};
    this.code = this.body.code;
  }
}

/** Calls the API; answers the parsed JSON, or throws a Problem. */
export async function api(method, path, body, headers = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Accept-Language": language, ...headers },
  };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken;
  if (typeof body === "string") {
    init.headers["Content-Type"] = "text/plain; charset=utf-8";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { detail: text };
    }
  }
  if (!response.ok) throw new Problem(response.status, parsed);
  return { status: response.status, body: parsed, headers: response.headers };
}

/** The header that spends a step-up approval (none without one). */
export const approvalHeader = (approval) => (approval ? { "Obol-Approval": approval } : {});

export const get = async (path) => (await api("GET", path)).body;
export const post = async (path, body) => (await api("POST", path, body ?? {})).body;

/** Every item of a paged list at `path` (which has its query), following `next` for at most
 * `pages` pages, and while `more(items)` says to go on. */
export async function pages(path, { pages: most = 20, more = () => true } = {}) {
  const items = [];
  let after;
  for (let page = 0; page < most; page += 1) {
    const separator = path.includes("?") ? "&" : "?";
    const answer = await get(after ? `${path}${separator}after=${encodeURIComponent(after)}` : path);
    items.push(...answer.items);
    after = answer.next;
    if (!after || !more(items)) return { items, next: after ?? null };
  }
  return { items, next: after ?? null };
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? "?" + new URLSearchParams(entries).toString() : "";
}

/** A fresh id for something the page creates (ids are decimal numbers; 96 random bits). */
export function newId() {
  const words = crypto.getRandomValues(new Uint32Array(3));
  let id = 0n;
  for (const word of words) id = (id << 32n) | BigInt(word);
  return (id === 0n ? 1n : id).toString();
}
