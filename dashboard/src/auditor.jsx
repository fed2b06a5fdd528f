// The auditor's (and operator's) page: the audit log's signed checkpoint, an inclusion proof
// checked in the browser (SHA-256 per RFC 9162 and the checkpoint's Ed25519 signature, with
// WebCrypto: the page trusts the math, not the server's word), metrics as charts, and the
// principals with their keys.
import { useState } from "preact/hooks";
import { get, query } from "./api.js";
import { t, when } from "./i18n.js";
import { BarChart } from "./charts.jsx";
import { Badge, Loaded, ProblemBox, Section, Table, msOf, useLoad } from "./ui.jsx";

const bytes = (text) => new TextEncoder().encode(text);
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (data) => Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

async function sha256(...parts) {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

async function text(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.text();
}

/** The root an RFC 9162 §2.1.3.2 inclusion proof leads to, or null when it cannot. */
async function rootFromProof(index, size, leaf, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/** Checks entry `index` against the signed checkpoint; answers the steps and their results. */
async function verify(index) {
  const steps = [];
  const keyLine = (await text("/v1/audit/key")).trim();
  // origin+keyhash+key: the key is base64, which may itself hold "+".
  const [origin, keyHashHex] = keyLine.split("+", 2);
  const keyB64 = keyLine.slice(origin.length + keyHashHex.length + 2);
  const keyBytes = fromBase64(keyB64);
  const note = await text("/v1/audit/checkpoint");
  const [body, signatures] = note.split("\n\n");
  const [noteOrigin, size, rootB64] = body.split("\n");
  const signed = bytes(`${body}\n`);
  const signatureLine = signatures.split("\n").find((line) => line.startsWith(`\u2014 ${origin} `));
  const signature = fromBase64(signatureLine.split(" ")[2]);
  const key = await crypto.subtle.importKey("raw", keyBytes.slice(1), { name: "Ed25519" }, false, ["verify"]);
  const signatureOk =
    noteOrigin === origin &&
    equal(signature.slice(0, 4), fromHex(keyHashHex)) &&
    (await crypto.subtle.verify({ name: "Ed25519" }, key, signature.slice(4), signed));
  steps.push(["checkpoint_signature", signatureOk, `${origin} · ${size}`]);
  if (BigInt(index) >= BigInt(size)) throw new Error(t("index_beyond_size", { size }));

  const entryText = await text(`/v1/audit/entries/${index}`);
  const start = entryText.indexOf('"entry":') + '"entry":'.length;
  const end = entryText.lastIndexOf(',"leaf_hash"');
  const entryBytes = bytes(entryText.slice(start, end));
  const leaf = await sha256(Uint8Array.of(0), entryBytes);
  const served = JSON.parse(entryText);
  steps.push(["leaf_hash", toHex(leaf) === served.leaf_hash, toHex(leaf).slice(0, 16)]);

  const proof = await get(`/v1/audit/entries/${index}/proof${query({ size })}`);
  const root = await rootFromProof(index, size, leaf, proof.path.map(fromBase64));
  steps.push(["inclusion", root !== null && equal(root, fromBase64(rootB64)), `${proof.path.length} ${t("hashes")}`]);
  return { steps, entry: served.entry, ok: steps.every(([, ok]) => ok) };
}

function Proofs() {
  const checkpoint = useLoad(() => text("/v1/audit/checkpoint"), []);
  const [index, setIndex] = useState("0");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const run = async (event) => {
    event.preventDefault();
    setError(null);
    setResult(null);
    try {
      setResult(await verify(index.trim()));
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Section id="audit" title={t("audit_log")}>
      <Loaded state={checkpoint}>{(note) => <pre class="note">{note}</pre>}</Loaded>
      <form onSubmit={run} class="inline-form">
        <label for="entry-index">{t("entry_index")}</label>
        <input id="entry-index" inputMode="numeric" value={index} onInput={(e) => setIndex(e.currentTarget.value)} required />
        <button type="submit" class="primary">{t("verify_proof")}</button>
      </form>
      <ProblemBox error={error} />
      {result && (
        <div class="card" role="status" data-verified={result.ok ? "yes" : "no"}>
          <p><strong>{result.ok ? t("proof_verified") : t("proof_failed")}</strong></p>
          <ul>
            {result.steps.map(([name, ok, detail]) => (
              <li>{ok ? "✔" : "✘"} {t(`step.${name}`)} <span class="muted">{detail}</span></li>
            ))}
          </ul>
          <details><summary>{t("entry")}</summary><pre>{JSON.stringify(result.entry, null, 2)}</pre></details>
        </div>
      )}
    </Section>
  );
}

/** Prometheus text: [{name, labels, value}]. */
function parseMetrics(body) {
  const samples = [];
  for (const line of body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function Metrics() {
  const metrics = useLoad(() => text("/metrics").then(parseMetrics), []);
  return (
    <Section id="metrics" title={t("metrics")}>
      <Loaded state={metrics}>
        {(samples) => {
          const sum = (name, label) => {
            const by = new Map();
            for (const s of samples.filter((s) => s.name === name)) by.set(s.labels[label], (by.get(s.labels[label]) ?? 0) + s.value);
            return [...by.entries()].sort((a, b) => b[1] - a[1]);
          };
          const requests = sum("obol_http_requests_total", "route").slice(0, 10);
          const decisions = sum("obol_risk_decisions_total", "action");
          const latency = [];
          for (const s of samples.filter((s) => s.name === "obol_http_request_duration_seconds_sum")) {
            const count = samples.find((c) => c.name === "obol_http_request_duration_seconds_count" && c.labels.route === s.labels.route);
            if (count?.value) latency.push([s.labels.route, (s.value / count.value) * 1000]);
          }
          latency.sort((a, b) => b[1] - a[1]);
          return (
            <>
              <BarChart title={t("requests_by_route")} valueLabel={t("show_numbers")}
                data={requests.map(([route, n]) => ({ label: route, value: n }))} />
              <BarChart title={t("mean_latency_ms")} valueLabel={t("show_numbers")}
                data={latency.slice(0, 10).map(([route, ms]) => ({ label: route, value: ms, text: `${ms.toFixed(2)} ms` }))} />
              <BarChart title={t("decisions_by_outcome")} valueLabel={t("show_numbers")}
                data={decisions.map(([action, n]) => ({ label: t(`action.${action}`), value: n }))} />
            </>
          );
        }}
      </Loaded>
    </Section>
  );
}

function Principals() {
  const principals = useLoad(() => get("/v1/principals?limit=100"), []);
  const [open, setOpen] = useState(null);
  const keys = useLoad(() => (open ? get(`/v1/principals/${open}/keys`) : Promise.resolve(null)), [open]);
  return (
    <Section id="principals" title={t("principals")}>
      <Loaded state={principals}>
        {(page) => (
          <Table
            caption={t("principals")}
            rows={page.items}
            rowKey={(p) => p.id}
            columns={[
              [t("principal_id"), (p) => p.id],
              [t("role"), (p) => t(`role.${p.role}`)],
              [t("status"), (p) => <Badge value={p.status} />],
              [t("added"), (p) => when(msOf(p.created_ns))],
              ["", (p) => <button type="button" onClick={() => setOpen(p.id)} aria-expanded={open === p.id} aria-label={`${t("keys")} ${p.id}`}>{t("keys")}</button>],
            ]}
          />
        )}
      </Loaded>
      {open && (
        <Loaded state={keys}>
          {(list) => list && (
            <Table
              caption={t("keys")}
              rows={list}
              columns={[
                [t("key"), (k) => <code>{k.key_id}</code>],
                [t("scopes"), (k) => k.scopes.join(", ")],
                [t("status"), (k) => <Badge value={k.status} />],
                [t("expires"), (k) => (k.expires_ns === "0" ? t("never") : when(msOf(k.expires_ns)))],
              ]}
            />
          )}
        </Loaded>
      )}
    </Section>
  );
}

export function Auditor() {
  return (
    <>
      <h1>{t("page.auditor")}</h1>
      <Proofs />
      <Metrics />
      <Principals />
    </>
  );
}
