#!/usr/bin/env node
// Pays an obol-priced URL with @x402/fetch: `node pay.mjs <config.json>`.
//
// The config names one scheme and what it pays with:
//   common:        url, count (default 1), scheme ("obol-voucher" | "obol-payword" | "exact"),
//                  network (the payer's obol server, obol:<instance-id>; offers for any other
//                  are not paid), payTo (the payee account the offer names), assets (optional)
//   obol-voucher:  seed (hex, 32 bytes), tabId, cumulative and seq (default 0), budget (optional)
//   obol-payword:  tabId, valuePerTick, chainSeed (hex of the last word w_n), chainLength (n),
//                  next (default 1); the chain is paywordChain(chainSeed, chainLength)
//   exact:         seed, from (payer account), device (device id)
// Ids and amounts may be JSON numbers or decimal strings.
//
// It fetches the URL `count` times in sequence and prints one JSON line per request:
// {"status", "body", "receipt"} (receipt: the decoded PAYMENT-RESPONSE, or null), plus "error"
// when the request could not be made or paid. Exit code: 0 if every answer was 200, 1 if not,
// 2 on a bad command line or config.

import { readFileSync } from "node:fs";
import {
  SCHEME_EXACT,
  SCHEME_PAYWORD,
  SCHEME_VOUCHER,
  decodePaymentResponseHeader,
  obolClient,
  paywordChain,
  wrapFetchWithPayment,
} from "./index.mjs";

function usage(message) {
  process.stderr.write(`pay.mjs: ${message}\nusage: node pay.mjs <config.json>\n`);
  process.exit(2);
}

function need(config, field) {
  if (config[field] === undefined || config[field] === null) {
    usage(`config.${field} is required for scheme ${config.scheme}`);
  }
  return config[field];
}

function seedOf(config) {
  const seed = Buffer.from(String(need(config, "seed")), "hex");
  if (seed.length !== 32) usage("config.seed must be 64 hex digits");
  return seed;
}

/** The obolClient options for the config's scheme. */
function schemesOf(config) {
  const payTo = String(need(config, "payTo"));
  switch (config.scheme) {
    case SCHEME_VOUCHER:
      return {
        voucher: {
          seed: seedOf(config),
          tabs: {
            [payTo]: {
              tabId: String(need(config, "tabId")),
              cumulative: String(config.cumulative ?? 0),
              seq: String(config.seq ?? 0),
              budget: config.budget === undefined ? undefined : String(config.budget),
            },
          },
        },
      };
    case SCHEME_PAYWORD: {
      const last = Buffer.from(String(need(config, "chainSeed")), "hex");
      if (last.length !== 32) usage("config.chainSeed must be 64 hex digits");
      const chain = paywordChain(last, need(config, "chainLength"));
      return {
        payword: {
          tabs: {
            [payTo]: {
              tabId: String(need(config, "tabId")),
              chain,
              next: config.next ?? 1,
              valuePerTick: String(need(config, "valuePerTick")),
            },
          },
        },
      };
    }
    case SCHEME_EXACT:
      return { exact: { seed: seedOf(config), from: String(need(config, "from")), device: String(need(config, "device")) } };
    default:
      return usage(`config.scheme must be ${SCHEME_VOUCHER}, ${SCHEME_PAYWORD} or ${SCHEME_EXACT}`);
  }
}

function receiptOf(response) {
  const header = response.headers.get("PAYMENT-RESPONSE");
  if (!header) return null;
  try {
    return decodePaymentResponseHeader(header);
  } catch (error) {
    return { undecodable: header, error: error.message };
  }
}

const [path] = process.argv.slice(2);
if (!path) usage("missing config path");
let config;
try {
  config = JSON.parse(readFileSync(path, "utf8"));
} catch (error) {
  usage(`cannot read ${path}: ${error.message}`);
}
if (typeof config.url !== "string") usage("config.url is required");
const count = config.count ?? 1;
if (!Number.isInteger(count) || count < 0) usage("config.count must be a non-negative integer");

let client;
try {
  client = obolClient({ ...schemesOf(config), assets: config.assets, network: need(config, "network") });
} catch (error) {
  usage(error.message);
}
const fetchWithPayment = wrapFetchWithPayment(fetch, client);

let allPaid = true;
for (let i = 0; i < count; i++) {
  let line;
  try {
    const response = await fetchWithPayment(config.url);
    line = { status: response.status, body: await response.text(), receipt: receiptOf(response) };
  } catch (error) {
    line = { status: null, body: null, receipt: null, error: error.message };
  }
  if (line.status !== 200) allPaid = false;
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
// exitCode rather than exit(): lets stdout drain when it is a pipe.
process.exitCode = allPaid ? 0 : 1;
