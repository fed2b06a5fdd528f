// The holder's page: balances in human units, payments (newest first, a page at a time) with the
// reason for every hold or block in plain words, tabs, devices and freezes, security (checklist,
// passkeys, TOTP), alerts, disputes, and the person's own data and access log.
import { useState } from "preact/hooks";
import { api, get, newId, pages, post, query } from "./api.js";
import { t, when } from "./i18n.js";
import { minorOf, money, typable } from "./money.js";
import { ActionButton, Badge, Loaded, ProblemBox, Section, Table, TabList, disputeColumns, msOf, useLoad, useStepUp } from "./ui.jsx";
import { createPasskey } from "./webauthn.js";

const PAGE_SIZE = 25;
const TABS = ["payments", "tabs", "devices", "security", "disputes", "data"];

function reasonOf(data) {
  return document.documentElement.lang === "ko" ? data.reason_ko ?? data.reason_en : data.reason_en;
}

/** Balances of the holder's accounts. */
function Balances({ me, accounts }) {
  const balances = useLoad(
    () => Promise.all(accounts.map((a) => get(`/v1/accounts/${a.id}/balance`))),
    [accounts.map((a) => a.id).join()],
  );
  return (
    <Section id="balances" title={t("balances")}>
      <Loaded state={balances}>
        {(list) => (
          <ul class="balances">
            {list.map((b) => (
              <li class="card" data-account={b.account_id}>
                <span class="muted">{t("account")} {b.account_id}</span>
                <strong class="amount">{money(b.available, b.asset_code, b.asset_scale)}</strong>
                <span class="muted">{t("available")}</span>
              </li>
            ))}
          </ul>
        )}
      </Loaded>
    </Section>
  );
}

/** Opens a dispute on one payment. */
function DisputeForm({ transfer, onDone }) {
  const [reason, setReason] = useState("unauthorised");
  const [statement, setStatement] = useState("");
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await post("/v1/disputes", { id: newId(), payment: transfer.id, reason, statement: statement || undefined });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  const reasons = ["unauthorised", "not_received", "not_as_described", "duplicate", "amount_wrong"];
  return (
    <form class="inline-form" onSubmit={submit} aria-label={t("open_dispute")}>
      <label for={`reason-${transfer.id}`}>{t("dispute_reason")}</label>
      <select id={`reason-${transfer.id}`} value={reason} onChange={(e) => setReason(e.currentTarget.value)}>
        {reasons.map((r) => (
          <option value={r}>{t(`dispute_reason.${r}`)}</option>
        ))}
      </select>
      <label for={`statement-${transfer.id}`}>{t("dispute_statement")}</label>
      <textarea id={`statement-${transfer.id}`} maxLength={2000} value={statement}
        onInput={(e) => setStatement(e.currentTarget.value)} />
      <button type="submit" class="primary">{t("open_dispute")}</button>
      <ProblemBox error={error} />
    </form>
  );
}

/** Payments touching the holder's accounts, newest first, one page at a time. */
function Payments({ accountIds }) {
  const [cursor, setCursor] = useState([]);
  const [disputing, setDisputing] = useState(null);
  const [opened, setOpened] = useState(0);
  const before = cursor[cursor.length - 1];
  // A page can come back short while more are older (a page examines a bounded stretch of the
  // ledger): go on until the page is full.
  const page = useLoad(async () => {
    const path = `/v1/transfers${query({ order: "desc", limit: PAGE_SIZE })}`;
    const start = before ? `${path}&after=${encodeURIComponent(before)}` : path;
    const found = await pages(start, { more: (items) => items.length < PAGE_SIZE });
    return found;
  }, [before, opened]);
  const mine = new Set(accountIds);
  return (
    <Section id="payments" title={t("payments")}>
      <Loaded state={page}>
        {(data) => (
          <>
            <Table
              caption={t("payments")}
              rows={data.items.map((i) => i.transfer)}
              rowKey={(tr) => tr.id}
              empty={t("no_payments")}
              columns={[
                [t("time"), (tr) => when(msOf(tr.timestamp))],
                [t("payment"), (tr) => <code>{tr.id}</code>],
                [
                  t("direction"),
                  (tr) =>
                    mine.has(tr.debit_account_id)
                      ? t("paid_to", { account: tr.credit_account_id })
                      : t("received_from", { account: tr.debit_account_id }),
                ],
                [t("amount"), (tr) => <span class="amount">{money(tr.amount, tr.asset_code, tr.asset_scale)}</span>],
                [t("status"), (tr) => <Badge value={tr.pending_status ?? (tr.flags.includes("pending") ? "pending" : "posted")} />],
                [
                  "",
                  (tr) =>
                    mine.has(tr.debit_account_id) &&
                    !tr.flags.includes("pending") && (
                      <button type="button" onClick={() => setDisputing(disputing === tr.id ? null : tr.id)}
                        aria-expanded={disputing === tr.id} aria-label={`${t("dispute")} ${tr.id}`}>
                        {t("dispute")}
                      </button>
                    ),
                ],
              ]}
            />
            {disputing && (
              <DisputeForm transfer={data.items.map((i) => i.transfer).find((tr) => tr.id === disputing)}
                onDone={() => { setDisputing(null); setOpened(opened + 1); location.hash = "#/holder/disputes"; }} />
            )}
            <div class="pager">
              <button type="button" disabled={cursor.length === 0} onClick={() => setCursor(cursor.slice(0, -1))}>
                {t("newer")}
              </button>
              <button type="button" disabled={!data.next} onClick={() => setCursor([...cursor, data.next])}>
                {t("older")}
              </button>
            </div>
          </>
        )}
      </Loaded>
    </Section>
  );
}

/** Payments held for review or blocked, with the reason in the page's language. */
function Holds() {
  const holds = useLoad(async () => (await pages("/v1/risk/reviews?status=all&limit=500")).items, []);
  return (
    <Section id="holds" title={t("holds")}>
      <Loaded state={holds}>
        {(items) => (
          <Table
            caption={t("holds")}
            rows={items.slice().reverse().slice(0, 100)}
            rowKey={(r) => r.id}
            empty={t("no_holds")}
            columns={[
              [t("time"), (r) => when(msOf(r.created_ns))],
              [t("amount"), (r) => money(r.amount, r.asset_code, r.asset_scale)],
              [t("to_account"), (r) => r.payee_account_id],
              [t("status"), (r) => <Badge value={r.status} />],
              [t("why"), (r) => <span class="reason">{reasonOf(r.risk)}</span>],
            ]}
          />
        )}
      </Loaded>
    </Section>
  );
}

/** The newest alerts about the person (the activity feed, oldest first on the API, kept 7 days):
 * blocked and held payments with the reason in the page's language, payments over the alert
 * threshold, new devices and factors, limit changes, freezes and disputes. */
function Alerts7Days() {
  const feed = useLoad(async () => (await pages("/v1/events?limit=1000", { pages: 10 })).items, []);
  const lang = document.documentElement.lang;
  const detail = (e) => {
    const d = e.data ?? {};
    const amount = d.amount && d.asset_code ? money(d.amount, d.asset_code, d.asset_scale) : null;
    const reason = lang === "ko" ? d.reason_ko ?? d.reason_en : d.reason_en;
    return [amount, reason].filter(Boolean).join(": ");
  };
  return (
    <Section id="activity" title={t("recent_alerts")}>
      <Loaded state={feed}>
        {(events) => (
          <Table
            caption={t("recent_alerts")}
            rows={events.slice().reverse().slice(0, 50)}
            rowKey={(e) => e.id}
            empty={t("no_recent_alerts")}
            columns={[
              [t("time"), (e) => when(e.timestamp)],
              [t("event"), (e) => { const key = `event.${e.type}`; const text = t(key); return text === key ? e.type : text; }],
              [t("why"), (e) => <span class="reason">{detail(e)}</span>],
            ]}
          />
        )}
      </Loaded>
    </Section>
  );
}

/** An amount field in human units ("0.25") for `asset`; `value` is the typed text. */
function AmountField({ id, label, value, onInput, asset }) {
  return (
    <p class="field">
      <label for={id}>{label} ({asset.asset_code})</label>
      <input id={id} inputMode="decimal" value={value} onInput={(e) => onInput(e.currentTarget.value)}
        placeholder={t("no_limit_placeholder")} />
    </p>
  );
}

/** Minor units of a typed device limit ("" is none, which the API spells "0"); throws a
 * plain-words error otherwise. A typed 0 is refused: to the API it means no limit, while a
 * person typing it means "nothing": that is a freeze. */
function typedMinor(text, asset) {
  if (text.trim() === "") return "0";
  const minor = minorOf(text, asset.asset_scale);
  if (minor === null) throw new Error(t("amount_invalid", { scale: asset.asset_scale }));
  if (minor === "0") throw new Error(t("limit_zero"));
  return minor;
}

/** A device limit as a person reads it: 0 is no limit. */
function deviceLimit(minor, limits) {
  return minor && minor !== "0" ? money(minor, limits.asset_code, limits.asset_scale) : t("no_limit");
}

/** A device's limits, edited in human units: lower ones apply at once, higher ones (or none) ask
 * for the second factor. */
function LimitsForm({ device, asset, stepUp, onDone }) {
  const shown = (minor) => (minor && minor !== "0" ? typable(minor, asset.asset_scale) : "");
  const [perPayment, setPerPayment] = useState(shown(device.limits?.per_payment));
  const [perDay, setPerDay] = useState(shown(device.limits?.per_day));
  const [error, setError] = useState(null);
  const save = async (limits) => {
    setError(null);
    try {
      const done = await stepUp.post(`/v1/devices/${device.id}/limits`, { limits });
      if (done) onDone();
    } catch (e) {
      setError(e);
    }
  };
  const submit = (event) => {
    event.preventDefault();
    try {
      const limits = { asset_code: asset.asset_code, asset_scale: asset.asset_scale,
        per_payment: typedMinor(perPayment, asset), per_day: typedMinor(perDay, asset) };
      save(limits);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <form class="card inline-form" onSubmit={submit} aria-label={`${t("edit_limits")} ${device.kid}`}>
      <AmountField id={`per-payment-${device.id}`} label={t("per_payment")} value={perPayment} onInput={setPerPayment} asset={asset} />
      <AmountField id={`per-day-${device.id}`} label={t("per_day")} value={perDay} onInput={setPerDay} asset={asset} />
      <div class="buttons">
        <button type="submit" class="primary">{t("save")}</button>
        {device.limits && <button type="button" onClick={() => save(null)}>{t("remove_limits")}</button>}
      </div>
      <ProblemBox error={error} />
    </form>
  );
}

function Devices({ me, accounts }) {
  const id = me.principal.id;
  const state = useLoad(async () => {
    const [devices, frozen] = await Promise.all([get(`/v1/principals/${id}/devices`), get(`/v1/principals/${id}/freeze`)]);
    return { devices, frozen };
  }, []);
  const stepUp = useStepUp();
  const [editing, setEditing] = useState(null);
  const freeze = (body) => post(`/v1/principals/${id}/freeze`, body).then(state.reload);
  // Lifting a freeze asks for the second factor's approval of exactly that.
  const unfreeze = (body) => stepUp.post(`/v1/principals/${id}/unfreeze`, body).then(state.reload);
  const fallback = accounts[0] ?? { asset_code: "USD", asset_scale: 2 };
  return (
    <Section id="devices" title={t("devices")}
      actions={
        <Loaded state={state}>
          {({ frozen }) =>
            frozen.all ? (
              <span class="action">
                <span class="badge badge-frozen">{t("all_payments_frozen")}</span>{" "}
                <ActionButton action={() => unfreeze({})}>{t("unfreeze_everything")}</ActionButton>
              </span>
            ) : (
              <ActionButton kind="danger" action={() => freeze({})}>{t("freeze_everything")}</ActionButton>
            )
          }
        </Loaded>
      }>
      {stepUp.form}
      <Loaded state={state}>
        {({ devices, frozen }) => (
          <>
            <Table
              caption={t("devices")}
              rows={devices}
              rowKey={(d) => d.id}
              empty={t("no_devices")}
              columns={[
                [t("device"), (d) => <code>{d.kid}</code>],
                [t("status"), (d) => <Badge value={frozen.devices.includes(d.id) ? "frozen" : d.status} />],
                [t("limits"), (d) => (d.limits ? `${deviceLimit(d.limits.per_payment, d.limits)} / ${deviceLimit(d.limits.per_day, d.limits)}` : t("no_limits"))],
                [t("added"), (d) => when(msOf(d.created_ns))],
                [
                  "",
                  (d) => (
                    <span class="buttons">
                      <button type="button" onClick={() => setEditing(editing === d.id ? null : d.id)} aria-expanded={editing === d.id}
                        aria-label={`${t("edit_limits")} ${d.kid}`}>
                        {t("edit_limits")}
                      </button>
                      {frozen.devices.includes(d.id) ? (
                        <ActionButton label={`${t("unfreeze")} ${d.kid}`} action={() => unfreeze({ device: d.id })}>
                          {t("unfreeze")}
                        </ActionButton>
                      ) : (
                        <ActionButton kind="danger" label={`${t("freeze")} ${d.kid}`} action={() => freeze({ device: d.id })}>
                          {t("freeze")}
                        </ActionButton>
                      )}
                    </span>
                  ),
                ],
              ]}
            />
            {editing && (() => {
              const device = devices.find((d) => d.id === editing);
              const asset = device?.limits ?? fallback;
              return device && <LimitsForm key={device.id} device={device} asset={asset} stepUp={stepUp}
                onDone={() => { setEditing(null); state.reload(); }} />;
            })()}
          </>
        )}
      </Loaded>
      <MonthlyLimits accounts={accounts} stepUp={stepUp} />
    </Section>
  );
}

/** Each account's monthly spending limit, edited in human units (the same step-up rule). */
function MonthlyLimits({ accounts, stepUp }) {
  const limits = useLoad(
    () => Promise.all(accounts.map(async (a) => ({ account: a, limit: (await get(`/v1/accounts/${a.id}/monthly-limit`)).limit }))),
    [accounts.map((a) => a.id).join()],
  );
  return (
    <div class="card" id="monthly-limits">
      <h3>{t("monthly_limits")}</h3>
      <Loaded state={limits}>
        {(list) => list.map(({ account, limit }) => (
          <MonthlyLimit key={account.id} account={account} limit={limit} stepUp={stepUp} onDone={limits.reload} />
        ))}
      </Loaded>
    </div>
  );
}

function MonthlyLimit({ account, limit, stepUp, onDone }) {
  const [typed, setTyped] = useState(limit ? typable(limit, account.asset_scale) : "");
  const [error, setError] = useState(null);
  const set = async (value) => {
    setError(null);
    try {
      const done = await stepUp.post(`/v1/accounts/${account.id}/monthly-limit`, { limit: value });
      if (done) onDone();
    } catch (e) {
      setError(e);
    }
  };
  const submit = (event) => {
    event.preventDefault();
    const minor = minorOf(typed, account.asset_scale);
    if (minor === null) setError(new Error(t("amount_invalid", { scale: account.asset_scale })));
    else set(minor);
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label={`${t("monthly_limit")} ${account.id}`}>
      <p>
        {t("account")} {account.id}:{" "}
        <strong data-testid={`monthly-limit-${account.id}`}>{limit ? money(limit, account.asset_code, account.asset_scale) : t("no_limits")}</strong>
      </p>
      <AmountField id={`monthly-${account.id}`} label={t("monthly_limit")} value={typed} onInput={setTyped} asset={account} />
      <div class="buttons">
        <button type="submit" class="primary">{t("save")}</button>
        {limit && <button type="button" onClick={() => set(null)}>{t("remove_limits")}</button>}
      </div>
      <ProblemBox error={error} />
    </form>
  );
}

function Security({ me, accounts }) {
  const id = me.principal.id;
  const checklist = useLoad(() => get(`/v1/principals/${id}/security-checklist`), []);
  const [message, setMessage] = useState(null);
  const [totp, setTotp] = useState(null);
  const [code, setCode] = useState("");
  const [recovery, setRecovery] = useState(null);
  const [error, setError] = useState(null);
  const lang = document.documentElement.lang;
  const addPasskey = async () => {
    const started = await post(`/v1/principals/${id}/passkeys`);
    const credential = await createPasskey(started.options);
    await post(`/v1/principals/${id}/passkeys/finish`, { ceremony_id: started.ceremony_id, credential });
    setMessage(t("passkey_added"));
    checklist.reload();
  };
  const startTotp = async () => setTotp(await post(`/v1/principals/${id}/totp`, {}));
  const confirmTotp = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      const done = await post(`/v1/principals/${id}/totp/confirm`, { code: code.trim() });
      setRecovery(done.recovery_codes);
      setTotp(null);
      checklist.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Section id="security" title={t("security")}>
      <Loaded state={checklist}>
        {(list) => (
          <>
            <p class="score">
              {t("security_score")}: <strong>{list.score}</strong> / 100
            </p>
            <ul class="checklist">
              {list.items.map((item) => (
                <li class={item.done ? "done" : "todo"}>
                  <span class="badge">{item.done ? t("done") : t("to_do")}</span>{" "}
                  <span>{(item.explanation[lang] ?? item.explanation.en).what}</span>
                  {!item.done && <p class="next">{(item.explanation[lang] ?? item.explanation.en).next}</p>}
                </li>
              ))}
            </ul>
          </>
        )}
      </Loaded>
      <Passkeys id={id} version={checklist.data?.score} />
      <div class="buttons">
        <ActionButton action={addPasskey}>{t("add_passkey")}</ActionButton>
        <ActionButton action={startTotp}>{t("set_up_totp")}</ActionButton>
      </div>
      {message && <p role="status">{message}</p>}
      {totp && (
        <form class="card" onSubmit={confirmTotp} aria-label={t("set_up_totp")}>
          <img alt={t("totp_qr")} src={`data:image/svg+xml;base64,${btoa(totp.qr_svg)}`} width="180" height="180" />
          <p>{t("totp_secret")}: <code>{totp.secret_base32}</code></p>
          <label for="totp-confirm">{t("totp_code")}</label>
          <input id="totp-confirm" inputMode="numeric" autoComplete="one-time-code" value={code}
            onInput={(e) => setCode(e.currentTarget.value)} required />
          <button type="submit" class="primary">{t("confirm")}</button>
          <ProblemBox error={error} />
        </form>
      )}
      {recovery && (
        <div class="card" role="status">
          <p>{t("recovery_codes_once")}</p>
          <ul class="codes">{recovery.map((c) => <li><code>{c}</code></li>)}</ul>
        </div>
      )}
      <Alerts me={me} accounts={accounts} />
    </Section>
  );
}

/** The person's passkeys, each with a way to remove it (lost or stolen). */
function Passkeys({ id, version }) {
  const passkeys = useLoad(() => get(`/v1/principals/${id}/passkeys`), [version]);
  return (
    <div class="card">
      <h3>{t("passkeys")}</h3>
      <Loaded state={passkeys}>
        {(list) => (
          <Table
            caption={t("passkeys")}
            rows={list}
            rowKey={(p) => p.credential_id}
            empty={t("no_passkeys")}
            columns={[
              [t("passkey"), (p) => <code>{p.credential_id.slice(0, 12)}…</code>],
              [t("status"), (p) => <Badge value={p.usable ? "active" : "suspended"} />],
              ["", (p) => (
                <ActionButton kind="danger" label={`${t("remove")} ${p.credential_id.slice(0, 12)}`}
                  action={async () => { await api("DELETE", `/v1/principals/${id}/passkeys/${p.credential_id}`); passkeys.reload(); }}>
                  {t("remove")}
                </ActionButton>
              )],
            ]}
          />
        )}
      </Loaded>
    </div>
  );
}

function Alerts({ me, accounts }) {
  const id = me.principal.id;
  const alerts = useLoad(() => get(`/v1/principals/${id}/alerts`), []);
  return (
    <div class="card" id="alerts">
      <h3>{t("alerts")}</h3>
      <Loaded state={alerts}>
        {(a) => <AlertForm key={JSON.stringify(a)} id={id} alerts={a} accounts={accounts} onDone={alerts.reload} />}
      </Loaded>
    </div>
  );
}

/** The alert threshold, edited in human units in one of the person's assets. */
function AlertForm({ id, alerts, accounts, onDone }) {
  const assets = [...new Map(accounts.map((a) => [`${a.asset_code}/${a.asset_scale}`, a])).values()];
  const current = alerts.payment_over;
  const [asset, setAsset] = useState(current ? `${current.asset_code}/${current.asset_scale}` : assets[0] ? `${assets[0].asset_code}/${assets[0].asset_scale}` : "");
  const [typed, setTyped] = useState(current ? typable(current.amount, current.asset_scale) : "");
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const put = async (payment_over) => {
    setError(null);
    setSaved(false);
    try {
      await api("PUT", `/v1/principals/${id}/alerts`, { payment_over });
      setSaved(true);
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  const submit = (event) => {
    event.preventDefault();
    const chosen = assets.find((a) => `${a.asset_code}/${a.asset_scale}` === asset);
    const minor = chosen ? minorOf(typed, chosen.asset_scale) : null;
    if (!chosen || minor === null) {
      setError(new Error(t("amount_invalid", { scale: chosen?.asset_scale ?? 0 })));
      return;
    }
    put({ asset_code: chosen.asset_code, asset_scale: chosen.asset_scale, amount: minor });
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label={t("alerts")}>
      <p data-testid="alert-threshold">
        {current ? t("alert_payment_over", { amount: money(current.amount, current.asset_code, current.asset_scale) }) : t("no_alerts")}
      </p>
      <p class="field">
        <label for="alert-amount">{t("alert_when_over")}</label>
        <input id="alert-amount" inputMode="decimal" value={typed} required onInput={(e) => setTyped(e.currentTarget.value)} />
      </p>
      {assets.length > 1 && (
        <p class="field">
          <label for="alert-asset">{t("asset")}</label>
          <select id="alert-asset" value={asset} onChange={(e) => setAsset(e.currentTarget.value)}>
            {assets.map((a) => <option value={`${a.asset_code}/${a.asset_scale}`}>{a.asset_code}</option>)}
          </select>
        </p>
      )}
      <div class="buttons">
        <button type="submit" class="primary">{t("save")}</button>
        {current && <button type="button" onClick={() => put(null)}>{t("turn_off_alerts")}</button>}
      </div>
      {saved && <p role="status">{t("saved")}</p>}
      <ProblemBox error={error} />
    </form>
  );
}

function Disputes() {
  const disputes = useLoad(() => get("/v1/disputes?limit=100"), []);
  const lang = document.documentElement.lang;
  return (
    <Section id="disputes" title={t("disputes")}>
      <Loaded state={disputes}>
        {(page) => (
          <Table
            caption={t("disputes")}
            rows={page.items}
            rowKey={(d) => d.id}
            empty={t("no_disputes")}
            columns={disputeColumns([], [[t("next_step"), (d) => (lang === "ko" ? d.next_ko : d.next_en)]])}
          />
        )}
      </Loaded>
    </Section>
  );
}

function YourData({ me }) {
  const id = me.principal.id;
  const log = useLoad(() => get(`/v1/principals/${id}/access-log?limit=50`), []);
  const download = async () => {
    const exported = await get(`/v1/principals/${id}/export`);
    const blob = new Blob([JSON.stringify(exported, null, 2)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `obol-export-${id}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  };
  return (
    <Section id="data" title={t("your_data")} actions={<ActionButton action={download}>{t("export_data")}</ActionButton>}>
      <h3>{t("access_log")}</h3>
      <Loaded state={log}>
        {(page) => (
          <Table
            caption={t("access_log")}
            rows={page.items}
            empty={t("no_reads")}
            columns={[
              [t("time"), (r) => when(msOf(r.time_ns))],
              [t("reader"), (r) => `${t(`role.${r.reader_role}`)} ${r.reader_id}`],
              [t("purpose"), (r) => r.purpose],
              [t("what"), (r) => r.what],
            ]}
          />
        )}
      </Loaded>
    </Section>
  );
}

export function Holder({ me }) {
  const accounts = useLoad(() => get(`/v1/accounts${query({ owner: me.principal.id, limit: 100 })}`), []);
  const tab = location.hash.split("/")[2];
  const current = TABS.includes(tab) ? tab : "payments";
  return (
    <>
      <h1>{t("page.holder")}</h1>
      <Loaded state={accounts}>
        {(page) => {
          const ids = page.items.map((a) => a.id);
          return (
            <>
              <Balances me={me} accounts={page.items} />
              <nav class="subnav" aria-label={t("sections")}>
                {TABS.map((name) => (
                  <a href={`#/holder/${name}`} aria-current={name === current ? "page" : undefined}>
                    {t(name === "data" ? "your_data" : name)}
                  </a>
                ))}
              </nav>
              {current === "payments" && (
                <>
                  <Payments accountIds={ids} />
                  <Holds />
                  <Alerts7Days />
                </>
              )}
              {current === "tabs" && (
                <TabList id="tabs" title={t("tabs")} accounts={page.items} side="payer" counterparty={t("to_account")} showStatus />
              )}
              {current === "devices" && <Devices me={me} accounts={page.items} />}
              {current === "security" && <Security me={me} accounts={page.items} />}
              {current === "disputes" && <Disputes />}
              {current === "data" && <YourData me={me} />}
            </>
          );
        }}
      </Loaded>
    </>
  );
}
