// The holder's page: balances in human units, payments (newest first, a page at a time) with the
// reason for every hold or block in plain words, tabs, devices and freezes, security (checklist,
// passkeys, TOTP), alerts, disputes, and the person's own data and access log.
import { useState } from "preact/hooks";
import { api, get, newId, pages, post, query } from "./api.js";
import { t, when } from "./i18n.js";
import { money } from "./money.js";
import { ActionButton, Badge, Loaded, ProblemBox, Section, Table, TabList, disputeColumns, msOf, useLoad } from "./ui.jsx";
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

function Devices({ me }) {
  const id = me.principal.id;
  const state = useLoad(async () => {
    const [devices, frozen] = await Promise.all([get(`/v1/principals/${id}/devices`), get(`/v1/principals/${id}/freeze`)]);
    return { devices, frozen };
  }, []);
  const freeze = (body) => post(`/v1/principals/${id}/freeze`, body).then(state.reload);
  return (
    <Section id="devices" title={t("devices")}
      actions={
        <Loaded state={state}>
          {({ frozen }) =>
            frozen.all ? (
              <span class="badge badge-frozen">{t("all_payments_frozen")}</span>
            ) : (
              <ActionButton kind="danger" action={() => freeze({})}>{t("freeze_everything")}</ActionButton>
            )
          }
        </Loaded>
      }>
      <Loaded state={state}>
        {({ devices, frozen }) => (
          <Table
            caption={t("devices")}
            rows={devices}
            rowKey={(d) => d.id}
            empty={t("no_devices")}
            columns={[
              [t("device"), (d) => <code>{d.kid}</code>],
              [t("status"), (d) => <Badge value={frozen.devices.includes(d.id) ? "frozen" : d.status} />],
              [t("limits"), (d) => (d.limits ? `${money(d.limits.per_payment, d.limits.asset_code, d.limits.asset_scale)} / ${money(d.limits.per_day, d.limits.asset_code, d.limits.asset_scale)}` : t("no_limits"))],
              [t("added"), (d) => when(msOf(d.created_ns))],
              [
                "",
                (d) =>
                  frozen.devices.includes(d.id) ? (
                    <span class="muted">{t("unfreeze_needs_factor")}</span>
                  ) : (
                    <ActionButton kind="danger" label={`${t("freeze")} ${d.kid}`} action={() => freeze({ device: d.id })}>
                      {t("freeze")}
                    </ActionButton>
                  ),
              ],
            ]}
          />
        )}
      </Loaded>
    </Section>
  );
}

function Security({ me }) {
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
      <Alerts me={me} />
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

function Alerts({ me }) {
  const id = me.principal.id;
  const alerts = useLoad(() => get(`/v1/principals/${id}/alerts`), []);
  return (
    <div class="card">
      <h3>{t("alerts")}</h3>
      <Loaded state={alerts}>
        {(a) => (
          <p>
            {a.payment_over
              ? t("alert_payment_over", { amount: money(a.payment_over.amount, a.payment_over.asset_code, a.payment_over.asset_scale) })
              : t("no_alerts")}
          </p>
        )}
      </Loaded>
    </div>
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
                </>
              )}
              {current === "tabs" && (
                <TabList id="tabs" title={t("tabs")} accounts={page.items} side="payer" counterparty={t("to_account")} showStatus />
              )}
              {current === "devices" && <Devices me={me} />}
              {current === "security" && <Security me={me} />}
              {current === "disputes" && <Disputes />}
              {current === "data" && <YourData me={me} />}
            </>
          );
        }}
      </Loaded>
    </>
  );
}
