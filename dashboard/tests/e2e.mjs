// End-to-end tests of the dashboard in real headless Chromium, driven by Playwright
// (playwright-core, pointed at the system's Chromium). The Rust test crates/obol/tests/dashboard.rs
// starts a real `obol serve`, sets up the parties over the API and runs this script with a JSON
// configuration; the script signs in as each role, works the pages, checks the results through
// the API with the parties' own keys, runs axe-core on every page, saves screenshots, and prints
// one JSON line of measurements. Any failed check exits non-zero with its message.
//
// Usage: node e2e.mjs CONFIG.json
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const base = config.base;
mkdirSync(config.screenshots, { recursive: true });
const measured = { axe_pages: 0, screenshots: [] };

async function api(key, method, path, body) {
  const response = await fetch(`${config.api}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});

/** The page the check that failed was on, saved for a look. */
let current = null;
process.on("uncaughtException", async (error) => {
  console.error(error);
  if (current) await current.screenshot({ path: `${config.screenshots}/failed.png`, fullPage: true }).catch(() => {});
  process.exit(1);
});

/** A fresh browser (no cookies), its page, and the problems its console reported. */
async function fresh() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-GB" });
  const page = await context.newPage();
  current = page;
  const problems = [];
  // Network refusals are checked by URL below; the console's copy of them is left out.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  // The refusals a page expects: asking for a session before signing in, and whether a shadow
  // run is going when none is.
  page.on("response", (response) => {
    const url = new URL(response.url());
    const expected =
      (response.status() === 401 && url.pathname === "/v1/session") ||
      (response.status() === 404 && url.pathname === "/v1/risk/shadow") ||
      (response.status() === 404 && url.pathname === "/v1/risk/model") ||
      // A change that lowers protection, asked without an approval: the page then asks for one.
      (response.status() === 403 && response.request().headers()["obol-approval"] === undefined &&
        /\/(unfreeze|limits|monthly-limit)$/.test(url.pathname));
    if (response.status() >= 400 && !expected) problems.push(`${response.status()} ${response.request().method()} ${url.pathname}`);
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  return { context, page, problems };
}

/** axe-core on the page as it stands: no serious or critical violation. */
async function accessible(page, name) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`),
    [],
    `${name}: axe-core found serious or critical violations`,
  );
  measured.axe_pages += 1;
}

async function shot(page, name) {
  const path = `${config.screenshots}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  measured.screenshots.push(path);
}

/** Presses Tab until `target` has the focus (at most 15 times). */
async function tabTo(page, target) {
  for (let i = 0; i < 15; i += 1) {
    if (await target.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`Tab never reached ${target}`);
}

/** Signs in with an API key through the form, with the keyboard only. */
async function signInWithKey(page, key, at = base) {
  await page.goto(`${at}/app/`);
  await page.getByLabel("API key", { exact: true }).waitFor();
  // Keyboard only: focus moves by Tab from the top of the page to the key field.
  await tabTo(page, page.getByLabel("API key", { exact: true }));
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

// 1. The sign-in page: its policy header, cookie flags after sign-in, accessibility.
{
  const { context, page, problems } = await fresh();
  const response = await page.goto(`${base}/app/`);
  const csp = response.headers()["content-security-policy"] ?? "";
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  await page.getByRole("heading", { name: "Sign in", level: 1 }).waitFor();
  await accessible(page, "sign-in");
  await shot(page, "sign-in");
  await signInWithKey(page, config.holder.key);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-obol_session");
  assert.ok(session, "the session cookie is set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/");
  assert.equal(await page.evaluate(() => document.cookie.includes("obol_session")), false, "scripts cannot read it");
  assert.deepEqual(problems, [], "no console errors");
  await context.close();
}

// 2. The holder adds a passkey (Chromium's virtual authenticator, with user verification), signs
//    out and signs in with it; a payment made over the API appears; the held one shows why; a
//    device is frozen; a dispute is opened.
{
  const { context, page, problems } = await fresh();
  await signInWithKey(page, config.holder.key);
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });
  await page.getByRole("link", { name: "Security" }).click();
  await page.getByRole("button", { name: "Add a passkey" }).click();
  await page.getByText("Your passkey was added.").waitFor();
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "the authenticator holds the new passkey");
  assert.equal(credentials[0].isResidentCredential, true, "a discoverable passkey");
  const exported = await api(config.holder.key, "GET", `/v1/principals/${config.holder.id}/export`);
  assert.equal(exported.body.factors.passkeys, 1, "the server holds it too");
  await accessible(page, "holder-security");
  await shot(page, "holder-security");

  // Sign out, then in again with the passkey alone.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Principal id").fill(config.holder.id);
  const challenge = page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/sessions/passkey");
  await page.getByRole("button", { name: "Sign in with a passkey" }).click();
  const asked = await (await challenge).json();
  assert.deepEqual(asked.options.publicKey.allowCredentials, [], "the challenge names no credential");
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  const session = await page.evaluate(async () => (await fetch("/v1/session")).json());
  assert.equal(session.credential, "passkey", "the session was opened by the passkey");
  assert.equal(session.principal_id, config.holder.id);
  const signCount = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials[0].signCount;
  assert.ok(signCount >= 1, "the authenticator signed");

  await page.getByRole("link", { name: "Payments" }).click();
  const payments = page.locator("#payments");
  await payments.getByText(config.payment.id, { exact: true }).waitFor();
  const row = payments.locator("tr", { hasText: config.payment.id });
  assert.match(await row.innerText(), new RegExp(config.payment.shown.replace(/[.$]/g, "\\$&")));
  const holds = page.locator("#holds");
  await holds.getByText(config.held.reason).waitFor();
  // The blocked payment, with what it was and why, among the alerts.
  const blockedRow = page.locator("#activity tr", { hasText: "Payment blocked" });
  await blockedRow.waitFor();
  assert.match(await blockedRow.innerText(), new RegExp(config.blocked.shown.replace(/[.$]/g, "\\$&")));
  assert.match(await holds.innerText(), /Pending/);
  await accessible(page, "holder");
  await shot(page, "holder");

  // Freeze a device.
  await page.getByRole("link", { name: "Devices" }).click();
  await page.getByRole("button", { name: `Freeze ${config.device.kid}` }).click();
  await page.locator("#devices").getByText("Frozen", { exact: true }).first().waitFor();
  const frozen = await api(config.holder.key, "GET", `/v1/principals/${config.holder.id}/freeze`);
  assert.deepEqual(frozen.body.devices, [config.device.id], "the device is frozen on the server");
  await shot(page, "holder-devices");

  // Limits in human units: setting them where there were none applies at once; raising one asks
  // for the second factor, here the passkey, in the page.
  const devicePath = `/v1/principals/${config.holder.id}/devices`;
  await page.getByRole("button", { name: `Edit limits ${config.device.kid}` }).click();
  await page.getByLabel("Per payment (USD)").fill("5.00");
  await page.getByLabel("Per day (USD)").fill("20");
  await page.getByRole("button", { name: "Save" }).first().click();
  await page.locator("#devices").getByText("USD 5.00 / USD 20.00").waitFor();
  let device = (await api(config.holder.key, "GET", devicePath)).body.find((d) => d.id === config.device.id);
  assert.deepEqual([device.limits.per_payment, device.limits.per_day], ["500", "2000"]);
  await page.getByRole("button", { name: `Edit limits ${config.device.kid}` }).click();
  await page.getByLabel("Per payment (USD)").fill("50");
  await page.getByRole("button", { name: "Save" }).first().click();
  const approval = page.getByTestId("approval");
  await approval.waitFor();
  assert.equal(await approval.getByTestId("approval-details").innerText(),
    `device=${config.device.id};USD/2 per_payment=5000 per_day=2000`, "the form says what it approves");
  await accessible(page, "holder-step-up");
  await shot(page, "holder-step-up");
  await approval.getByRole("button", { name: "Approve with a passkey" }).click();
  await page.locator("#devices").getByText("USD 50.00 / USD 20.00").waitFor();
  device = (await api(config.holder.key, "GET", devicePath)).body.find((d) => d.id === config.device.id);
  assert.equal(device.limits.per_payment, "5000", "raised, with the passkey's approval");

  // Lifting the freeze asks for the passkey too.
  await page.getByRole("button", { name: `Unfreeze ${config.device.kid}` }).click();
  await page.getByTestId("approval").getByRole("button", { name: "Approve with a passkey" }).click();
  await page.getByRole("button", { name: `Freeze ${config.device.kid}`, exact: true }).waitFor();
  const lifted = await api(config.holder.key, "GET", `/v1/principals/${config.holder.id}/freeze`);
  assert.deepEqual(lifted.body.devices, [], "the device is unfrozen on the server");

  // A monthly limit on the account, lowered without asking.
  await page.getByLabel(`Monthly limit (USD)`).first().fill("100");
  await page.locator("#monthly-limits").getByRole("button", { name: "Save" }).first().click();
  await page.locator("#monthly-limits").getByText("USD 100.00").waitFor();
  const monthly = await api(config.holder.key, "GET", "/v1/accounts/1/monthly-limit");
  assert.equal(monthly.body.limit, "10000");

  // An alert threshold in human units, on the security page.
  await page.getByRole("link", { name: "Security" }).click();
  await page.getByLabel("Alert me for any payment over").fill("12.5");
  await page.locator("#alerts").getByRole("button", { name: "Save" }).click();
  await page.locator("#alerts").getByText("You get an alert for any payment over USD 12.50.").waitFor();
  const alerts = await api(config.holder.key, "GET", `/v1/principals/${config.holder.id}/alerts`);
  assert.deepEqual(alerts.body.payment_over, { asset_code: "USD", asset_scale: 2, amount: "1250" });

  // Open a dispute on the payment, with a statement that tries to run script.
  await page.getByRole("link", { name: "Payments" }).click();
  await page.getByRole("button", { name: `Dispute ${config.payment.id}` }).click();
  await page.getByLabel("Reason").selectOption("not_received");
  await page.getByLabel("What happened (optional)").fill(config.xss);
  await page.getByRole("button", { name: "Open a dispute" }).click();
  await page.locator("#disputes").getByText(config.payment.id).waitFor();
  const disputes = await api(config.holder.key, "GET", "/v1/disputes");
  assert.equal(disputes.body.items.length, 1);
  assert.equal(disputes.body.items[0].payment, config.payment.id);
  assert.equal(disputes.body.items[0].reason, "not_received");
  measured.dispute = disputes.body.items[0].id;
  await accessible(page, "holder-disputes");
  await shot(page, "holder-disputes");

  // Korean, switched on the page, from the same catalogue.
  await page.getByLabel("Language").selectOption("ko");
  await page.getByRole("heading", { name: "내 돈", level: 1 }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), "ko");
  await shot(page, "holder-ko");
  await page.getByLabel("언어").selectOption("en");
  await page.getByRole("heading", { name: "My money", level: 1 }).waitFor();
  assert.deepEqual(problems, [], "no console errors");
  await context.close();
}

// 3. The analyst approves the held payment from the queue, with the keyboard only; the payer's
//    view changes.
{
  const { context, page, problems } = await fresh();
  await signInWithKey(page, config.analyst.key);
  const queue = page.locator("#queue");
  await queue.getByText(config.held.reason).waitFor();
  await accessible(page, "analyst");
  await shot(page, "analyst");
  const open = page.getByRole("button", { name: `Review ${config.held.review}` });
  await open.focus();
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Approve" }).waitFor();
  await tabTo(page, page.getByLabel("Note (optional)"));
  await page.keyboard.type("Known customer, checked by phone.");
  await page.keyboard.press("Tab"); // Approve
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Approve", "Tab reaches Approve");
  await page.keyboard.press("Enter");
  await queue.getByText("The queue is empty.").waitFor();
  const review = await api(config.analyst.key, "GET", `/v1/risk/reviews/${config.held.review}`);
  assert.equal(review.body.status, "approved");
  assert.deepEqual(problems, [], "no console errors");
  await context.close();

  const payer = await fresh();
  await signInWithKey(payer.page, config.holder.key);
  await payer.page.locator("#holds").getByText("Approved").waitFor();
  await payer.page.locator("#payments").getByText(config.held.id, { exact: true }).waitFor();
  await shot(payer.page, "holder-after-approval");
  await payer.context.close();
}

// 4. The merchant sees income (the chart and the total), and the payer's statement as text.
{
  const { context, page, problems } = await fresh();
  await signInWithKey(page, config.merchant.key);
  await page.getByTestId("income-total").waitFor();
  assert.equal(await page.getByTestId("income-total").innerText(), config.merchant.income);
  assert.equal(await page.locator("#income svg rect.bar").count(), 30, "one bar a day");
  const statement = page.locator("#disputes .statement");
  await statement.first().waitFor();
  assert.equal(await statement.first().innerText(), config.xss, "the statement is shown as the text it is");
  assert.equal(await page.locator("#disputes img, #disputes script").count(), 0, "no markup from the statement");
  assert.equal(await page.evaluate(() => window.__xss), undefined, "no script ran");
  // The webhook's deliveries: the dispute's event waits for a receiver that is not there.
  await page.getByRole("button", { name: "Deliveries http://127.0.0.1:9/obol-events" }).click();
  await page.getByTestId("deliveries").getByText(/events? wait to be delivered/).waitFor();
  assert.doesNotMatch(await page.getByTestId("deliveries").innerText(), /^0 events/);
  await accessible(page, "merchant");
  await shot(page, "merchant");
  assert.deepEqual(problems, [], "no console errors");
  await context.close();
}

// 4b. The demo merchant (on a server started with --demo) sees its priced routes and what the
// payments the test made through `obol pay` earned.
{
  const { context, page, problems } = await fresh();
  await signInWithKey(page, config.demo.key, config.demo.base);
  const article = page.locator("#priced-routes tbody tr").filter({ hasText: config.demo.route });
  await article.waitFor();
  assert.equal(await article.getByTestId("route-earned").innerText(), config.demo.earned);
  assert.equal(await article.getByTestId("route-requests").innerText(), String(config.demo.requests));
  assert.equal(await page.locator("#priced-routes svg rect.bar").count(), 1, "one bar per path paid");
  await accessible(page, "merchant-priced-routes");
  await shot(page, "merchant-priced-routes");
  assert.deepEqual(problems, [], "no console errors");
  await context.close();
}

// 5. The auditor verifies an inclusion proof in the browser, against the signed checkpoint.
{
  const { context, page, problems } = await fresh();
  await signInWithKey(page, config.auditor.key);
  await page.getByLabel("Entry number").fill("1");
  await page.getByRole("button", { name: "Verify its proof" }).click();
  const result = page.locator("[data-verified]");
  await result.waitFor();
  assert.equal(await result.getAttribute("data-verified"), "yes", await result.innerText());
  await page.locator("#metrics svg").first().waitFor();
  await accessible(page, "auditor");
  await shot(page, "auditor");
  assert.deepEqual(problems, [], "no console errors");
  await context.close();
}

// 6. The CSRF defence as a browser meets it: a request without the token is refused.
{
  const { context, page } = await fresh();
  await signInWithKey(page, config.holder.key);
  const status = await page.evaluate(async (id) => {
    const response = await fetch(`/v1/principals/${id}/freeze`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    return response.status;
  }, config.holder.id);
  assert.equal(status, 403, "no CSRF token, refused");
  const frozen = await api(config.holder.key, "GET", `/v1/principals/${config.holder.id}/freeze`);
  assert.equal(frozen.body.all, false, "nothing was frozen");
  await context.close();
}

// 7. A holder with 10,000 payments: the first screen (balances and the newest page of payments).
{
  const { context, page } = await fresh();
  await signInWithKey(page, config.busy.key);
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  const runs = [];
  for (let i = 0; i < 3; i += 1) {
    const started = Date.now();
    await page.goto(`${base}/app/#/holder`);
    await page.reload();
    await page.locator("#payments tbody tr").nth(24).waitFor();
    await page.locator("#balances .amount").first().waitFor();
    runs.push(Date.now() - started);
  }
  assert.equal(await page.locator("#payments tbody tr").count(), 25, "one page of 25");
  const first = await page.locator("#payments tbody tr").first().innerText();
  assert.match(first, new RegExp(config.busy.newest), "newest first");
  measured.first_screen_ms = runs;
  await shot(page, "holder-10000");
  await context.close();
}

await browser.close();
console.log(JSON.stringify(measured));
