// obol's payment schemes for the x402 v2 client `@x402/fetch`.
//
// Three scheme clients (the `SchemeNetworkClient` shape of @x402/core) build the `payload` of a
// `PAYMENT-SIGNATURE` for an obol-priced route:
//   - `obol-voucher`: a signed cumulative voucher into a tab (OBV2, 124 bytes, base64url);
//   - `obol-payword`: the next words of a committed SHA-256 hash chain;
//   - `exact`: a device-signed authorization of one ledger transfer.
// The byte layouts are those of docs/vouchers.md (all integers little-endian) and
// crates/obol-core/src/channel.rs (version 2: every signature names the server's network, the
// SHA-256 of the offer's `network` text). Only node:crypto is used for Ed25519 and SHA-256.

import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from "node:crypto";
import { x402Client, wrapFetchWithPayment, decodePaymentResponseHeader } from "@x402/fetch";

export { x402Client, wrapFetchWithPayment, decodePaymentResponseHeader };

/** Scheme names, as obol offers them in `accepts[].scheme`. */
export const SCHEME_VOUCHER = "obol-voucher";
export const SCHEME_PAYWORD = "obol-payword";
export const SCHEME_EXACT = "exact";
/** Bytes of a binary voucher (4 + 16 + 16 + 16 + 8 + 64). */
export const VOUCHER_BYTES = 124;
/** Bytes of a binary PayWord commitment (4 + 32 + 16 + 16 + 32 + 4 + 16 + 64). */
export const COMMITMENT_BYTES = 184;
/** Longest hash chain a commitment may announce (obol's PAYWORD_LENGTH_MAX). */
export const PAYWORD_LENGTH_MAX = 1 << 24;
/** Most ticks one revealed word may skip (obol's PAYWORD_SKIP_MAX). */
export const PAYWORD_SKIP_MAX = 4096;

const VOUCHER_DOMAIN = Buffer.from("obol voucher v2\0", "latin1");
const VOUCHER_MAGIC = Buffer.from("OBV2", "latin1");
const COMMITMENT_DOMAIN = Buffer.from("obol payword v2\0", "latin1");
const COMMITMENT_MAGIC = Buffer.from("OBP2", "latin1");
const EXACT_DOMAIN = Buffer.from("obol exact v2\0\0\0", "latin1");
// PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

const U128_MAX = (1n << 128n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------------------------------------
// Integers and keys

/**
 * Reads an unsigned integer given as a bigint, a safe integer number or a string of decimal
 * digits (the form obol uses for ids and amounts on the wire).
 */
function toUint(value, field, max = U128_MAX) {
  let n;
  if (typeof value === "bigint") {
    n = value;
  } else if (typeof value === "number" && Number.isSafeInteger(value)) {
    n = BigInt(value);
  } else if (typeof value === "string" && /^[0-9]+$/.test(value)) {
    n = BigInt(value);
  } else {
    throw new TypeError(`${field} must be an unsigned integer (bigint, number or decimal string), got ${String(value)}`);
  }
  if (n < 0n || n > max) {
    throw new RangeError(`${field} is out of range: ${n}`);
  }
  return n;
}

function uintLE(value, bytes) {
  const out = Buffer.alloc(bytes);
  let v = value;
  for (let i = 0; i < bytes; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

const u128 = (value, field) => uintLE(toUint(value, field), 16);
const u64 = (value, field) => uintLE(toUint(value, field, U64_MAX), 8);

function bytes32(value, field) {
  const buf = typeof value === "string" ? Buffer.from(value, "hex") : Buffer.from(value ?? []);
  if (buf.length !== 32) {
    throw new TypeError(`${field} must be 32 bytes`);
  }
  return buf;
}

/** The Ed25519 private key (a node KeyObject) of a 32-byte seed (Uint8Array, Buffer or hex). */
export function privateKey(seed) {
  const raw = bytes32(seed, "seed");
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, raw]), format: "der", type: "pkcs8" });
}

/** The raw 32-byte Ed25519 public key of a seed: what a device registers with obol. */
export function publicKey(seed) {
  const key = typeof seed?.asymmetricKeyType === "string" ? seed : privateKey(seed);
  // The SPKI DER of an Ed25519 key ends with the 32 raw key bytes.
  return createPublicKey(key).export({ format: "der", type: "spki" }).subarray(-32);
}

function signWith(key, message) {
  return sign(null, message, key);
}

// ---------------------------------------------------------------------------------------------
// Binary formats (docs/vouchers.md)

/**
 * The one obol network a client pays on: its server's id (`obol:<instance-id>`, as the server's
 * `GET /v1/x402/supported` and its tabs name it). A payer's account, device and tabs live on one
 * server, so a client signs for no other network: an offer naming another is not its to pay.
 */
function serverNetwork(network, field = "network") {
  if (typeof network !== "string" || !/^obol:[A-Za-z0-9_-]{1,32}$/.test(network)) {
    throw new TypeError(
      `${field} must be the payer's obol server network id, obol:<instance-id> (GET /v1/x402/supported), got ${JSON.stringify(network)}`,
    );
  }
  return network;
}

/** Refuses an offer for another network than the client's own. */
function checkNetwork(client, requirements) {
  if (requirements.network !== client.network) {
    throw new Error(
      `${client.scheme}: the offer is for network ${JSON.stringify(requirements.network)}; this client pays on ${client.network} only`,
    );
  }
}

/**
 * The 32 bytes that name an obol server in every signature: SHA-256 of its network id
 * (`obol:<instance-id>`, the `network` of its offers and tabs).
 */
export function networkTag(network) {
  if (typeof network !== "string" || !network.startsWith("obol:")) {
    throw new TypeError(`network must be an obol network id (obol:<instance-id>), got ${JSON.stringify(network)}`);
  }
  return createHash("sha256").update(network, "utf8").digest();
}

/** The 104 bytes a voucher's signature covers. */
export function voucherMessage({ network, tabId, payeeId, cumulative, seq }) {
  return Buffer.concat([
    VOUCHER_DOMAIN,
    networkTag(network),
    u128(tabId, "tabId"),
    u128(payeeId, "payeeId"),
    u128(cumulative, "cumulative"),
    u64(seq, "seq"),
  ]);
}

/**
 * A signed voucher in its binary form: "OBV2" (4), tab (16), payee (16), cumulative (16), seq (8),
 * signature (64), 124 bytes in all. The network is signed but not sent: the server checks
 * against its own.
 */
export function encodeVoucher({ seed, key, network, tabId, payeeId, cumulative, seq }) {
  const message = voucherMessage({ network, tabId, payeeId, cumulative, seq });
  const signature = signWith(key ?? privateKey(seed), message);
  return Buffer.concat([VOUCHER_MAGIC, message.subarray(VOUCHER_DOMAIN.length + 32), signature]);
}

/** SHA-256 of a word: one PayWord step. */
export function paywordHash(word) {
  return createHash("sha256").update(word).digest();
}

/**
 * The hash chain ending in `lastWord`: `[w0 (root), w1, ..., w_length]` with
 * `w_i = SHA-256(w_{i+1})`, as obol's `payword_chain(last, length)` builds it.
 */
export function paywordChain(lastWord, length) {
  if (!Number.isInteger(length) || length < 0 || length > PAYWORD_LENGTH_MAX) {
    throw new RangeError(`length must be an integer in 0..=${PAYWORD_LENGTH_MAX}`);
  }
  const chain = new Array(length + 1);
  chain[length] = bytes32(lastWord, "lastWord");
  for (let i = length - 1; i >= 0; i--) {
    chain[i] = paywordHash(chain[i + 1]);
  }
  return chain;
}

/** The bytes a PayWord commitment's signature covers. */
export function commitmentMessage({ network, tabId, payeeId, root, length, valuePerTick }) {
  if (!Number.isInteger(length) || length < 1 || length > PAYWORD_LENGTH_MAX) {
    throw new RangeError(`length must be an integer in 1..=${PAYWORD_LENGTH_MAX}`);
  }
  return Buffer.concat([
    COMMITMENT_DOMAIN,
    networkTag(network),
    u128(tabId, "tabId"),
    u128(payeeId, "payeeId"),
    bytes32(root, "root"),
    uintLE(BigInt(length), 4),
    u128(valuePerTick, "valuePerTick"),
  ]);
}

/**
 * A signed PayWord commitment: the 184-byte binary form ("OBP2", network, tab, payee, root,
 * length, value per tick, signature) in base64url without padding, the body field of
 * `POST /v1/tabs/{id}/commitment` (`{"commitment": ...}`). `network` is the tab's `network`.
 */
export function commitment({ seed, key, network, tabId, payeeId, root, length, valuePerTick }) {
  const message = commitmentMessage({ network, tabId, payeeId, root, length, valuePerTick });
  const signature = signWith(key ?? privateKey(seed), message);
  return Buffer.concat([COMMITMENT_MAGIC, message.subarray(COMMITMENT_DOMAIN.length), signature]).toString("base64url");
}

/**
 * The 144 bytes an `exact` authorization's signature covers: domain, network, transfer, from,
 * to, amount, asset code (3 ASCII letters) and scale (1 byte), 4 zero bytes, device, validBefore.
 */
export function exactMessage({ network, transfer, from, to, amount, asset, assetScale, device, validBefore }) {
  if (typeof asset !== "string" || !/^[A-Z]{3}$/.test(asset)) {
    throw new TypeError(`asset must be a 3-letter ISO 4217 code, got ${JSON.stringify(asset)}`);
  }
  if (!Number.isInteger(assetScale) || assetScale < 0 || assetScale > 255) {
    throw new TypeError(`assetScale must be an integer in 0..=255, got ${JSON.stringify(assetScale)}`);
  }
  return Buffer.concat([
    EXACT_DOMAIN,
    networkTag(network),
    u128(transfer, "transfer"),
    u128(from, "from"),
    u128(to, "to"),
    u128(amount, "amount"),
    Buffer.from(asset, "ascii"),
    Buffer.from([assetScale]),
    Buffer.alloc(4),
    u128(device, "device"),
    u64(validBefore, "validBefore"),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Scheme clients

/** Reads a per-payee table given as a Map or a plain object, keyed by the payee account id. */
function tabTable(tabs, normalize) {
  const entries = tabs instanceof Map ? [...tabs.entries()] : Object.entries(tabs ?? {});
  return new Map(entries.map(([payTo, tab]) => [toUint(payTo, "payTo").toString(), normalize(tab, payTo)]));
}

function tabFor(table, scheme, requirements) {
  const payTo = toUint(requirements.payTo, "requirements.payTo").toString();
  const tab = table.get(payTo);
  if (!tab) {
    throw new Error(`${scheme}: no tab pays account ${payTo}`);
  }
  return tab;
}

/** The offer's price: a positive count of minor units (a zero price would pay nothing). */
function priceOf(scheme, requirements) {
  const amount = toUint(requirements.amount, "requirements.amount");
  if (amount === 0n) {
    throw new Error(`${scheme}: the offer's amount is 0; obol prices are positive`);
  }
  return amount;
}

/** Whether the server refused the payment: a receipt with success false, or a bare 402. */
function refused(ctx) {
  if (ctx.settleResponse) {
    return ctx.settleResponse.success === false;
  }
  // @x402/core sets paymentRequired only when the retry got a 402 without PAYMENT-RESPONSE.
  return ctx.paymentRequired !== undefined;
}

/**
 * `obol-voucher`: each payment signs a new voucher whose cumulative amount grows by the price.
 *
 * `tabs` maps a payee account id (the offer's `payTo`) to `{tabId, cumulative, seq, budget?}`:
 * the tab's last accepted cumulative amount and seq (0 and 0 for a fresh tab), and optionally the
 * most the tab may reach (its escrow). The state advances when a payload is made; if the server
 * refuses that payment (and no later one was made), it is rolled back so the next voucher does
 * not pay for the refused request. Use one tab from one request at a time: vouchers sent
 * concurrently may reach the server out of order, and the older one is then refused as stale.
 */
export class ObolVoucherScheme {
  scheme = SCHEME_VOUCHER;

  constructor({ seed, tabs, network }) {
    this.network = serverNetwork(network);
    this.key = privateKey(seed);
    this.tabs = tabTable(tabs, (tab, payTo) => ({
      tabId: toUint(tab.tabId, `tabs[${payTo}].tabId`),
      cumulative: toUint(tab.cumulative ?? 0n, `tabs[${payTo}].cumulative`),
      seq: toUint(tab.seq ?? 0n, `tabs[${payTo}].seq`, U64_MAX),
      budget: tab.budget === undefined ? undefined : toUint(tab.budget, `tabs[${payTo}].budget`),
      pending: undefined,
    }));
    this.schemeHooks = { onPaymentResponse: (ctx) => this.#onPaymentResponse(ctx) };
  }

  /** A copy of the state of the tab paying `payTo`: `{tabId, cumulative, seq, budget}`. */
  tab(payTo) {
    const tab = this.tabs.get(toUint(payTo, "payTo").toString());
    return tab && { tabId: tab.tabId, cumulative: tab.cumulative, seq: tab.seq, budget: tab.budget };
  }

  async createPaymentPayload(x402Version, requirements) {
    checkNetwork(this, requirements);
    const tab = tabFor(this.tabs, this.scheme, requirements);
    const amount = priceOf(this.scheme, requirements);
    const cumulative = tab.cumulative + amount;
    if (tab.budget !== undefined && cumulative > tab.budget) {
      throw new Error(
        `${this.scheme}: paying ${amount} would bring tab ${tab.tabId} to ${cumulative}, beyond its budget of ${tab.budget}`,
      );
    }
    const seq = tab.seq + 1n;
    const voucher = encodeVoucher({
      key: this.key,
      network: this.network,
      tabId: tab.tabId,
      payeeId: toUint(requirements.payTo, "requirements.payTo"),
      cumulative,
      seq,
    }).toString("base64url");
    tab.pending = { voucher, before: { cumulative: tab.cumulative, seq: tab.seq } };
    tab.cumulative = cumulative;
    tab.seq = seq;
    return { x402Version, payload: { voucher } };
  }

  #onPaymentResponse(ctx) {
    const voucher = ctx.paymentPayload?.payload?.voucher;
    for (const tab of this.tabs.values()) {
      if (tab.pending?.voucher !== voucher) continue;
      if (refused(ctx)) {
        // Re-signing the same (cumulative, seq) later gives the same bytes, so this is safe
        // even if the server did take the payment: the repeat would then be answered stale.
        tab.cumulative = tab.pending.before.cumulative;
        tab.seq = tab.pending.before.seq;
      }
      tab.pending = undefined;
    }
  }
}

/**
 * `obol-payword`: each payment reveals the chain word that covers the price,
 * `k = ceil(amount / valuePerTick)` ticks past the last one revealed.
 *
 * `tabs` maps a payee account id to `{tabId, chain, next, valuePerTick}`: the chain `[w0..wn]`
 * (32-byte words, e.g. from `paywordChain`) committed on the tab, the index of the next word to
 * reveal (1 on a fresh commitment) and the value of one tick. Refused payments are rolled back
 * as in `ObolVoucherScheme`.
 */
export class ObolPaywordScheme {
  scheme = SCHEME_PAYWORD;

  constructor({ tabs, network }) {
    this.network = serverNetwork(network);
    this.tabs = tabTable(tabs, (tab, payTo) => {
      const chain = (tab.chain ?? []).map((word, i) => bytes32(word, `tabs[${payTo}].chain[${i}]`));
      if (chain.length < 2) {
        throw new TypeError(`tabs[${payTo}].chain must hold the root and at least one word`);
      }
      const next = tab.next ?? 1;
      if (!Number.isInteger(next) || next < 1) {
        throw new TypeError(`tabs[${payTo}].next must be an integer >= 1`);
      }
      const valuePerTick = toUint(tab.valuePerTick, `tabs[${payTo}].valuePerTick`);
      if (valuePerTick === 0n) {
        throw new RangeError(`tabs[${payTo}].valuePerTick must be positive`);
      }
      return { tabId: toUint(tab.tabId, `tabs[${payTo}].tabId`), chain, next, valuePerTick, pending: undefined };
    });
    this.schemeHooks = { onPaymentResponse: (ctx) => this.#onPaymentResponse(ctx) };
  }

  /** A copy of the progress of the tab paying `payTo`: `{tabId, next, length, valuePerTick}`. */
  tab(payTo) {
    const tab = this.tabs.get(toUint(payTo, "payTo").toString());
    return tab && { tabId: tab.tabId, next: tab.next, length: tab.chain.length - 1, valuePerTick: tab.valuePerTick };
  }

  async createPaymentPayload(x402Version, requirements) {
    checkNetwork(this, requirements);
    const tab = tabFor(this.tabs, this.scheme, requirements);
    const amount = priceOf(this.scheme, requirements);
    const ticks = (amount + tab.valuePerTick - 1n) / tab.valuePerTick;
    if (ticks > BigInt(PAYWORD_SKIP_MAX)) {
      throw new Error(
        `${this.scheme}: a price of ${amount} needs ${ticks} ticks of ${tab.valuePerTick}; one payment may reveal at most ${PAYWORD_SKIP_MAX}`,
      );
    }
    const index = tab.next + Number(ticks) - 1;
    const length = tab.chain.length - 1;
    if (index > length) {
      throw new Error(
        `${this.scheme}: tab ${tab.tabId}'s chain is exhausted (${length - tab.next + 1} of ${length} ticks left, ${ticks} needed)`,
      );
    }
    tab.pending = { index, before: tab.next };
    tab.next = index + 1;
    return {
      x402Version,
      payload: { tab: tab.tabId.toString(), index, word: tab.chain[index].toString("hex") },
    };
  }

  #onPaymentResponse(ctx) {
    const payload = ctx.paymentPayload?.payload ?? {};
    for (const tab of this.tabs.values()) {
      if (tab.pending === undefined || tab.tabId.toString() !== payload.tab || tab.pending.index !== payload.index) {
        continue;
      }
      if (refused(ctx)) {
        tab.next = tab.pending.before;
      }
      tab.pending = undefined;
    }
  }
}

/**
 * `exact`: each payment is a fresh device-signed authorization of one ledger transfer of the
 * price from account `from` to the offer's `payTo`, valid for the offer's `maxTimeoutSeconds`.
 * The transfer id (a random nonzero 120-bit number) is the nonce: it pays at most once.
 */
export class ObolExactScheme {
  scheme = SCHEME_EXACT;

  constructor({ seed, from, device, network }) {
    this.network = serverNetwork(network);
    this.key = privateKey(seed);
    this.from = toUint(from, "from");
    this.device = toUint(device, "device");
  }

  async createPaymentPayload(x402Version, requirements) {
    checkNetwork(this, requirements);
    const assetScale = requirements.extra?.assetScale;
    if (assetScale === undefined) {
      throw new Error(`${this.scheme}: the offer has no extra.assetScale; it is not an obol offer`);
    }
    let transfer = 0n;
    while (transfer === 0n) {
      transfer = BigInt(`0x${randomBytes(15).toString("hex")}`);
    }
    const timeout = requirements.maxTimeoutSeconds;
    if (!Number.isInteger(timeout) || timeout <= 0) {
      throw new Error(`${this.scheme}: maxTimeoutSeconds must be a positive integer`);
    }
    const validBefore = Math.floor(Date.now() / 1000) + timeout;
    const message = exactMessage({
      network: this.network,
      transfer,
      from: this.from,
      to: toUint(requirements.payTo, "requirements.payTo"),
      amount: priceOf(this.scheme, requirements),
      asset: requirements.asset,
      assetScale,
      device: this.device,
      validBefore,
    });
    return {
      x402Version,
      payload: {
        from: this.from.toString(),
        device: this.device.toString(),
        transfer: transfer.toString(),
        validBefore,
        signature: signWith(this.key, message).toString("base64url"),
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The x402 client

/**
 * Spend controls for obol offers. @x402/fetch by default pays only its "default assets" (USDC
 * and the like, recognised by a scheme's findDefaultAsset) and refuses every other asset, so an
 * ISO 4217 code such as "USD" would be refused. `assets` narrows what may be paid:
 *   - undefined: any asset (`allowedAssets: true`; the client only holds obol schemes, and the
 *     tabs' budgets and escrows bound what vouchers and ticks can spend);
 *   - an array of codes, e.g. ["USD"]: only those, uncapped;
 *   - an object, e.g. {USD: "5000"}: only those, each capped per payment (atomic minor units).
 */
function spendControls(assets, network) {
  if (assets === undefined) {
    return { allowedAssets: true };
  }
  const entries = Array.isArray(assets) ? assets.map((code) => [code, undefined]) : Object.entries(assets);
  return {
    allowedAssets: entries.map(([asset, cap]) =>
      cap === undefined ? { network, asset } : { network, asset, maxAmountPerPayment: toUint(cap, `assets.${asset}`).toString() },
    ),
  };
}

/**
 * An `x402Client` paying obol offers with the given schemes on `network`, the payer's obol
 * server (`obol:<instance-id>`; required: offers naming any other network are not paid). Each of
 * `voucher`, `payword`, `exact` may be a scheme instance (on the same network) or the options of
 * its constructor. `assets` sets spend controls (see above); `selector` is @x402/core's
 * payment-requirements selector (default: the first offer this client can pay).
 */
export function obolClient({ voucher, payword, exact, assets, network, selector } = {}) {
  serverNetwork(network);
  const make = (given, Scheme) => {
    if (!given) return undefined;
    const scheme = given instanceof Scheme ? given : new Scheme({ ...given, network });
    if (scheme.network !== network) {
      throw new Error(`obolClient: the ${scheme.scheme} scheme pays on ${scheme.network}, not ${network}`);
    }
    return scheme;
  };
  const schemes = [make(voucher, ObolVoucherScheme), make(payword, ObolPaywordScheme), make(exact, ObolExactScheme)].filter(
    Boolean,
  );
  if (schemes.length === 0) {
    throw new Error("obolClient needs at least one of voucher, payword, exact");
  }
  const client = new x402Client(selector);
  for (const scheme of schemes) {
    client.register(network, scheme);
  }
  return client.setSpendControls(spendControls(assets, network));
}
