// Self-test: `node selftest.mjs` (exit 0 when every check passes).
//
// 1. The binary formats reproduce the examples of docs/vouchers.md byte for byte.
// 2. A local HTTP server answering like an obol-priced route (402 + PAYMENT-REQUIRED, then 200
//    + PAYMENT-RESPONSE) is paid through the real @x402/fetch wrapper with every scheme, and it
//    checks each payment the way obol does (signatures, cumulative growth, hash chain).
// 3. pay.mjs, the CLI the Rust interop test runs, pays the same server.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createPublicKey, verify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import {
  ObolExactScheme,
  ObolPaywordScheme,
  ObolVoucherScheme,
  COMMITMENT_BYTES,
  VOUCHER_BYTES,
  commitment,
  decodePaymentResponseHeader,
  encodeVoucher,
  exactMessage,
  networkTag,
  obolClient,
  paywordChain,
  privateKey,
  publicKey,
  voucherMessage,
  wrapFetchWithPayment,
} from "./index.mjs";

// docs/vouchers.md, "Example": the RFC 8037 appendix A key; tab 42 pays account 7 a cumulative
// 250000 at seq 3, on network obol:example.
const RFC8037_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8037_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const DOC_NETWORK_TAG = "548095f6bfca1e6f324132fef7da2fe27089c97fb2e440b2e35f07f9cda36ff1";
const DOC_MESSAGE =
  "6f626f6c20766f756368657220763200548095f6bfca1e6f324132fef7da2fe27089c97fb2e440b2e35f07f9cda36ff12a0000000000000000000000000000000700000000000000000000000000000090d003000000000000000000000000000300000000000000";
const DOC_VOUCHER =
  "4f4256322a0000000000000000000000000000000700000000000000000000000000000090d003000000000000000000000000000300000000000000d7297d1953abfdc7754d3697e393679c5c43903de274109114efd64021bd1786b8d4d6d02400980c4023648149cdac756df02c5339cae18d0eb1475412d82802";
const DOC_CHAIN = [
  "12771355e46cd47c71ed1721fd5319b383cca3a1f9fce3aa1c8cd3bd37af20d7",
  "2b32db6c2c0a6235fb1397e8225ea85e0f0e6e8c7b126d0016ccbde0e667151e",
  "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925",
  "0000000000000000000000000000000000000000000000000000000000000000",
];

const seed = Buffer.from(RFC8037_SEED, "hex");
const verifyingKey = createPublicKey(privateKey(seed));
const sha256 = (bytes) => createHash("sha256").update(bytes).digest();
const le = (value, bytes) => {
  const out = Buffer.alloc(bytes);
  for (let i = 0, v = BigInt(value); i < bytes; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
};
const readLE = (bytes) => bytes.reduceRight((acc, byte) => (acc << 8n) | BigInt(byte), 0n);

// ---------------------------------------------------------------------------------------------
// A stand-in for an obol-priced route

const NETWORK = "obol:example";
const PRICE = 1000n;
const PAYEE = "7";
const TAB = 42n;
const offerOf = (scheme, asset = "USD") => ({
  scheme,
  network: NETWORK,
  amount: PRICE.toString(),
  asset,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { assetScale: 9 },
});

/**
 * Serves `/<scheme>[?asset=XXX]` priced at PRICE in that one scheme, checking payments as
 * obol's x402 layer does. `refuseNext` makes it refuse the next payment (as obol does on e.g. a
 * failed ledger write), to test that the client rolls its state back.
 */
function obolLikeServer({ root }) {
  const seen = []; // every decoded PAYMENT-SIGNATURE
  const tabState = { cumulative: 0n, seq: 0n, tickIndex: 0, tickWord: Buffer.from(root, "hex") };
  const usedTransfers = new Set();
  const control = { refuseNext: false };

  const check = (payment) => {
    const { accepted, payload } = payment;
    if (control.refuseNext) {
      control.refuseNext = false;
      return { error: "ledger_unavailable" };
    }
    switch (accepted.scheme) {
      case "obol-voucher": {
        const bytes = Buffer.from(payload.voucher, "base64url");
        if (bytes.length !== VOUCHER_BYTES || bytes.subarray(0, 4).toString() !== "OBV2") return { error: "invalid_payload" };
        const [tab, payee, cumulative, seq] = [readLE(bytes.subarray(4, 20)), readLE(bytes.subarray(20, 36)),
          readLE(bytes.subarray(36, 52)), readLE(bytes.subarray(52, 60))];
        const message = voucherMessage({ network: accepted.network, tabId: tab, payeeId: payee, cumulative, seq });
        if (!verify(null, message, verifyingKey, bytes.subarray(60))) return { error: "tab_bad_signature" };
        if (tab !== TAB || payee.toString() !== accepted.payTo) return { error: "tab_wrong_payee" };
        if (seq <= tabState.seq || cumulative <= tabState.cumulative) return { error: "voucher_stale" };
        const added = cumulative - tabState.cumulative;
        if (added < BigInt(accepted.amount)) return { error: "underpaid" };
        Object.assign(tabState, { cumulative, seq });
        return { transaction: `tab:${tab}:${cumulative}`, amount: added };
      }
      case "obol-payword": {
        const ticks = payload.index - tabState.tickIndex;
        if (payload.tab !== TAB.toString() || ticks <= 0) return { error: "payword_stale" };
        let word = Buffer.from(payload.word, "hex");
        const revealed = word;
        for (let i = 0; i < ticks; i++) word = sha256(word);
        if (!word.equals(tabState.tickWord)) return { error: "payword_bad_preimage" };
        const added = BigInt(ticks) * PRICE / 2n; // the test's chain ticks are worth PRICE / 2
        if (added < BigInt(accepted.amount)) return { error: "underpaid" };
        Object.assign(tabState, { tickIndex: payload.index, tickWord: revealed });
        return { transaction: `tab:${TAB}:${BigInt(payload.index) * PRICE / 2n}`, amount: added };
      }
      case "exact": {
        const message = exactMessage({
          network: accepted.network,
          transfer: payload.transfer,
          from: payload.from,
          to: accepted.payTo,
          amount: accepted.amount,
          asset: accepted.asset,
          assetScale: accepted.extra.assetScale,
          device: payload.device,
          validBefore: payload.validBefore,
        });
        if (!verify(null, message, verifyingKey, Buffer.from(payload.signature, "base64url"))) {
          return { error: "signature_invalid" };
        }
        if (payload.validBefore <= Math.floor(Date.now() / 1000)) return { error: "authorization_expired" };
        if (usedTransfers.has(payload.transfer)) return { error: "authorization_used" };
        usedTransfers.add(payload.transfer);
        return { transaction: `transfer:${payload.transfer}`, amount: BigInt(accepted.amount) };
      }
      default:
        return { error: "unsupported_scheme" };
    }
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    const offer = offerOf(url.pathname.slice(1), url.searchParams.get("asset") ?? "USD");
    const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64"); // standard, padded
    const required = (error, receipt) => {
      const body = { x402Version: 2, error, resource: { url: url.href, description: "test", mimeType: "text/plain" }, accepts: [offer] };
      const headers = { "content-type": "application/json", "cache-control": "no-store", "payment-required": encode(body) };
      if (receipt) headers["payment-response"] = encode(receipt);
      res.writeHead(402, headers).end("{}");
    };
    const header = req.headers["payment-signature"];
    if (!header) return required("PAYMENT-SIGNATURE header is required");
    const payment = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
    seen.push(payment);
    const outcome = check(payment);
    if (outcome.error) {
      return required(outcome.error, { success: false, errorReason: outcome.error, transaction: "", network: NETWORK });
    }
    const receipt = { success: true, payer: "1", transaction: outcome.transaction, network: NETWORK, amount: outcome.amount.toString() };
    res.writeHead(200, { "content-type": "text/plain", "payment-response": encode(receipt) }).end(`paid ${seen.length}`);
  });
  return { server, seen, tabState, control };
}

// ---------------------------------------------------------------------------------------------
// Checks

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test("voucher signed message and binary form match docs/vouchers.md", () => {
  assert.equal(publicKey(seed).toString("hex"), RFC8037_PUBLIC);
  assert.equal(networkTag(NETWORK).toString("hex"), DOC_NETWORK_TAG);
  assert.throws(() => networkTag("eip155:8453"), /obol network id/);
  const fields = { network: NETWORK, tabId: 42n, payeeId: 7n, cumulative: 250000n, seq: 3n };
  assert.equal(voucherMessage(fields).toString("hex"), DOC_MESSAGE);
  const voucher = encodeVoucher({ seed, ...fields });
  assert.equal(voucher.toString("hex"), DOC_VOUCHER);
  assert.equal(voucher.length, VOUCHER_BYTES, "the doc's example voucher is 124 bytes");
});

test("ObolVoucherScheme signs the doc's example voucher", async () => {
  const scheme = new ObolVoucherScheme({ seed, network: NETWORK, tabs: { 7: { tabId: "42", cumulative: 249000n, seq: 2n } } });
  const { x402Version, payload } = await scheme.createPaymentPayload(2, offerOf("obol-voucher"));
  assert.equal(x402Version, 2);
  assert.deepEqual(Object.keys(payload), ["voucher"]);
  assert.doesNotMatch(payload.voucher, /[=+/]/, "base64url without padding");
  assert.equal(Buffer.from(payload.voucher, "base64url").toString("hex"), DOC_VOUCHER);
  assert.deepEqual(scheme.tab(7), { tabId: 42n, cumulative: 250000n, seq: 3n, budget: undefined });
});

test("ObolVoucherScheme refuses an unknown payee and a payment beyond the budget", async () => {
  const scheme = new ObolVoucherScheme({ seed, network: NETWORK, tabs: new Map([["7", { tabId: 42n, cumulative: 0n, seq: 0n, budget: 1500n }]]) });
  await assert.rejects(scheme.createPaymentPayload(2, { ...offerOf("obol-voucher"), payTo: "8" }), /no tab pays account 8/);
  await scheme.createPaymentPayload(2, offerOf("obol-voucher"));
  await assert.rejects(scheme.createPaymentPayload(2, offerOf("obol-voucher")), /beyond its budget of 1500/);
  assert.equal(scheme.tab("7").cumulative, 1000n, "a refused payment changes nothing");
});

test("paywordChain reproduces the doc's example chain", () => {
  const chain = paywordChain(Buffer.alloc(32), 3);
  assert.deepEqual(chain.map((word) => word.toString("hex")), DOC_CHAIN);
  assert.equal(paywordChain(Buffer.alloc(32), 0).length, 1);
});

test("commitment is the 184-byte OBP2 form, signed for the network", () => {
  const root = Buffer.from(DOC_CHAIN[0], "hex");
  const text = commitment({ seed, network: NETWORK, tabId: 42n, payeeId: 7n, root, length: 3, valuePerTick: 500n });
  assert.doesNotMatch(text, /[=+/]/);
  const bytes = Buffer.from(text, "base64url");
  const tag = Buffer.from(DOC_NETWORK_TAG, "hex");
  const expected = Buffer.concat([Buffer.from("OBP2"), tag, le(42, 16), le(7, 16), root, le(3, 4), le(500, 16)]);
  assert.equal(bytes.length, COMMITMENT_BYTES);
  assert.ok(bytes.subarray(0, 120).equals(expected));
  const signed = Buffer.concat([Buffer.from("obol payword v2\0"), bytes.subarray(4, 120)]);
  assert.ok(verify(null, signed, verifyingKey, bytes.subarray(120)));
});

test("ObolPaywordScheme reveals ceil(amount / valuePerTick) ticks and stops at the chain's end", async () => {
  const chain = paywordChain(Buffer.alloc(32), 3);
  const scheme = new ObolPaywordScheme({ network: NETWORK, tabs: { 7: { tabId: 42n, chain, next: 1, valuePerTick: 400n } } });
  const pay = (amount) => scheme.createPaymentPayload(2, { ...offerOf("obol-payword"), amount });
  assert.deepEqual((await pay("400")).payload, { tab: "42", index: 1, word: DOC_CHAIN[1] });
  assert.deepEqual((await pay("401")).payload, { tab: "42", index: 3, word: DOC_CHAIN[3] }, "401 needs 2 ticks");
  await assert.rejects(pay("1"), /chain is exhausted/);
  await assert.rejects(scheme.createPaymentPayload(2, { ...offerOf("obol-payword"), payTo: "9" }), /no tab pays account 9/);
});

test("the exact authorization message has the documented 144-byte layout", () => {
  const message = exactMessage({
    network: NETWORK, transfer: 5001n, from: 1n, to: 7n, amount: 1000n, asset: "USD", assetScale: 9, device: 3n, validBefore: 1700000000,
  });
  const expected = Buffer.concat([
    Buffer.from("obol exact v2\0\0\0"), Buffer.from(DOC_NETWORK_TAG, "hex"), le(5001, 16), le(1, 16), le(7, 16), le(1000, 16),
    Buffer.from([0x55, 0x53, 0x44, 9]), Buffer.alloc(4), le(3, 16), le(1700000000, 8),
  ]);
  assert.equal(message.length, 144);
  assert.equal(message.toString("hex"), expected.toString("hex"));
});

test("ObolExactScheme signs a fresh authorization of the offer", async () => {
  const scheme = new ObolExactScheme({ seed, network: NETWORK, from: "1", device: 3n });
  const before = Math.floor(Date.now() / 1000);
  const { payload } = await scheme.createPaymentPayload(2, offerOf("exact"));
  assert.deepEqual(Object.keys(payload).sort(), ["device", "from", "signature", "transfer", "validBefore"]);
  assert.equal(payload.from, "1");
  assert.equal(payload.device, "3");
  assert.match(payload.transfer, /^[1-9][0-9]*$/);
  assert.ok(BigInt(payload.transfer) < 1n << 120n);
  assert.ok(payload.validBefore >= before + 60 && payload.validBefore <= before + 61);
  const message = exactMessage({ ...payload, network: NETWORK, to: 7n, amount: 1000n, asset: "USD", assetScale: 9 });
  assert.ok(verify(null, message, verifyingKey, Buffer.from(payload.signature, "base64url")));
  const again = await scheme.createPaymentPayload(2, offerOf("exact"));
  assert.notEqual(again.payload.transfer, payload.transfer, "each authorization is a new transfer");
});

test("every scheme refuses an offer for another network than its server's", async () => {
  const elsewhere = { ...offerOf("exact"), network: "obol:production" };
  const exact = new ObolExactScheme({ seed, network: NETWORK, from: "1", device: 3n });
  await assert.rejects(exact.createPaymentPayload(2, elsewhere), /pays on obol:example only/);
  const voucher = new ObolVoucherScheme({ seed, network: NETWORK, tabs: { 7: { tabId: 42n } } });
  await assert.rejects(voucher.createPaymentPayload(2, { ...offerOf("obol-voucher"), network: "obol:production" }), /only/);
  assert.equal(voucher.tab(7).seq, 0n, "nothing was signed");
  const payword = new ObolPaywordScheme({ network: NETWORK, tabs: { 7: { tabId: 42n, chain: paywordChain(Buffer.alloc(32), 3), valuePerTick: 400n } } });
  await assert.rejects(payword.createPaymentPayload(2, { ...offerOf("obol-payword"), network: "obol:production" }), /only/);
  assert.throws(() => new ObolExactScheme({ seed, from: "1", device: 3n }), /network must be/);
  assert.throws(() => obolClient({ network: "obol:*", exact: { seed, from: "1", device: 3n } }), /network must be/);
  assert.throws(() => obolClient({ network: "obol:production", exact }), /pays on obol:example, not obol:production/);
});

// The HTTP checks share one server.
const chain = paywordChain(Buffer.alloc(32, 0xab), 8); // ticks worth PRICE / 2: two per payment
const { server, seen, tabState, control } = obolLikeServer({ root: chain[0].toString("hex") });
let base;

test("@x402/fetch pays an obol-voucher route and sends the offer as `accepted`", async () => {
  const client = obolClient({ network: NETWORK, voucher: { seed, tabs: { 7: { tabId: TAB, cumulative: 0n, seq: 0n } } } });
  const fetchWithPayment = wrapFetchWithPayment(fetch, client);
  const response = await fetchWithPayment(`${base}/obol-voucher`);
  assert.equal(response.status, 200, await response.clone().text());
  const payment = seen.at(-1);
  assert.equal(payment.x402Version, 2);
  assert.deepEqual(payment.accepted, offerOf("obol-voucher"));
  assert.equal(payment.resource.url, `${base}/obol-voucher`);
  assert.deepEqual(Object.keys(payment.payload), ["voucher"]);
  const receipt = decodePaymentResponseHeader(response.headers.get("PAYMENT-RESPONSE"));
  assert.deepEqual(receipt, { success: true, payer: "1", transaction: "tab:42:1000", network: NETWORK, amount: "1000" });
  for (const cumulative of [2000n, 3000n]) {
    assert.equal((await fetchWithPayment(`${base}/obol-voucher`)).status, 200);
    assert.equal(tabState.cumulative, cumulative);
  }
});

test("a refused voucher is rolled back, so the next one pays only its own price", async () => {
  const voucher = new ObolVoucherScheme({ seed, network: NETWORK, tabs: { 7: { tabId: TAB, cumulative: tabState.cumulative, seq: tabState.seq } } });
  const fetchWithPayment = wrapFetchWithPayment(fetch, obolClient({ network: NETWORK, voucher }));
  control.refuseNext = true;
  const refusedAnswer = await fetchWithPayment(`${base}/obol-voucher`);
  assert.equal(refusedAnswer.status, 402);
  assert.equal(decodePaymentResponseHeader(refusedAnswer.headers.get("PAYMENT-RESPONSE")).errorReason, "ledger_unavailable");
  assert.equal(voucher.tab(7).cumulative, 3000n);
  const paid = await fetchWithPayment(`${base}/obol-voucher`);
  assert.equal(paid.status, 200);
  assert.equal(decodePaymentResponseHeader(paid.headers.get("PAYMENT-RESPONSE")).amount, "1000");
});

test("@x402/fetch pays obol-payword and exact routes", async () => {
  const payword = new ObolPaywordScheme({ network: NETWORK, tabs: { 7: { tabId: TAB, chain, valuePerTick: PRICE / 2n } } });
  const exact = new ObolExactScheme({ seed, network: NETWORK, from: 1n, device: 3n });
  const fetchWithPayment = wrapFetchWithPayment(fetch, obolClient({ network: NETWORK, payword, exact }));
  for (const index of [2, 4]) {
    const response = await fetchWithPayment(`${base}/obol-payword`);
    assert.equal(response.status, 200, await response.clone().text());
    assert.deepEqual(seen.at(-1).payload, { tab: "42", index, word: chain[index].toString("hex") });
  }
  control.refuseNext = true;
  assert.equal((await fetchWithPayment(`${base}/obol-payword`)).status, 402);
  assert.equal(payword.tab(7).next, 5, "a refused tick is rolled back");
  const response = await fetchWithPayment(`${base}/exact`);
  assert.equal(response.status, 200);
  assert.deepEqual(seen.at(-1).accepted, offerOf("exact"));
  assert.match(decodePaymentResponseHeader(response.headers.get("PAYMENT-RESPONSE")).transaction, /^transfer:\d+$/);
});

test("spend controls: ISO codes pass by default and can be allowed or capped per asset", async () => {
  const exact = { seed, from: 1n, device: 3n };
  const pay = (assets, asset = "USD") =>
    wrapFetchWithPayment(fetch, obolClient({ network: NETWORK, exact, assets }))(`${base}/exact?asset=${asset}`);
  assert.equal((await pay(undefined, "EUR")).status, 200);
  assert.equal((await pay(["USD"])).status, 200);
  assert.equal((await pay({ USD: "1000" })).status, 200);
  await assert.rejects(pay(["EUR"]), /rejected by spendControls/);
  await assert.rejects(pay({ USD: "999" }), /maxAmountPerPayment/);
});

test("pay.mjs pays count times with each scheme and prints one JSON line per request", async () => {
  const dir = mkdtempSync(join(tmpdir(), "x402-obol-"));
  try {
    const run = async (config) => {
      const path = join(dir, `${config.scheme}.json`);
      writeFileSync(path, JSON.stringify(config));
      const child = promisify(execFile)(process.execPath, [new URL("./pay.mjs", import.meta.url).pathname, path]);
      try {
        const { stdout } = await child;
        return { code: 0, lines: stdout.trim().split("\n").map((line) => JSON.parse(line)) };
      } catch (error) {
        return { code: error.code, lines: error.stdout.trim().split("\n").filter(Boolean).map((line) => JSON.parse(line)) };
      }
    };
    const common = { count: 2, seed: RFC8037_SEED, network: NETWORK, payTo: PAYEE, tabId: TAB.toString() };
    const voucher = await run({ ...common, url: `${base}/obol-voucher`, scheme: "obol-voucher", cumulative: tabState.cumulative.toString(), seq: Number(tabState.seq) });
    assert.equal(voucher.code, 0, JSON.stringify(voucher.lines));
    assert.equal(voucher.lines.length, 2);
    assert.deepEqual(voucher.lines[1].receipt, { success: true, payer: "1", transaction: "tab:42:6000", network: NETWORK, amount: "1000" });
    assert.match(voucher.lines[1].body, /^paid \d+$/);

    const payword = await run({
      ...common, url: `${base}/obol-payword`, scheme: "obol-payword", valuePerTick: "500",
      chainSeed: "ab".repeat(32), chainLength: 8, next: 5,
    });
    assert.equal(payword.code, 0, JSON.stringify(payword.lines));
    assert.deepEqual(payword.lines.map((line) => line.receipt.transaction), ["tab:42:3000", "tab:42:4000"]);

    const exact = await run({ ...common, url: `${base}/exact`, scheme: "exact", from: "1", device: 3 });
    assert.equal(exact.code, 0, JSON.stringify(exact.lines));
    assert.equal(exact.lines.length, 2);

    // Replaying the voucher tab from an old state: the server answers 402 and pay.mjs exits 1.
    const stale = await run({ ...common, url: `${base}/obol-voucher`, scheme: "obol-voucher", count: 1 });
    assert.equal(stale.code, 1);
    assert.equal(stale.lines[0].status, 402);
    assert.equal(stale.lines[0].receipt.errorReason, "voucher_stale");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------

await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
base = `http://127.0.0.1:${server.address().port}`;
let failures = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (error) {
    failures++;
    console.log(`not ok - ${name}\n${String(error.stack ?? error).replace(/^/gm, "    ")}`);
  }
}
server.closeAllConnections();
server.close();
console.log(failures === 0 ? `all ${tests.length} checks passed` : `${failures} of ${tests.length} checks failed`);
process.exitCode = failures === 0 ? 0 : 1;
