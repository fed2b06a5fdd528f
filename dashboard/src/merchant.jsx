// The merchant's page: income over the last 30 days as a chart, open tabs, priced routes and what
// each earned, payments received with refunds, disputes with their legal deadlines and an answer
// form, webhooks.
import { useState } from "preact/hooks";
import { get, newId, pages, post, query } from "./api.js";
import { t, when } from "./i18n.js";
import { approx, money } from "./money.js";
import { BarChart } from "./charts.jsx";
import { ActionButton, Badge, Loaded, ProblemBox, Section, Table, TabList, disputeColumns, msOf, useLoad } from "./ui.jsx";

const DAY_MS = 86400000;
const DAYS = 30;

function Income({ accounts }) {
  // Each account's history, newest first, back to 30 days ago.
  const income = useLoad(async () => {
    const since = (Math.floor(Date.now() / DAY_MS) - DAYS + 1) * DAY_MS;
    const older = (items) => items.length === 0 || msOf(items[items.length - 1].transfer.timestamp) >= since;
    const histories = await Promise.all(
      accounts.map((a) => pages(`/v1/transfers${query({ account: a.id, order: "desc", limit: 1000 })}`, { pages: 100, more: older })),
    );
    const ids = new Set(accounts.map((a) => a.id));
    return histories
      .flatMap((h) => h.items.map((i) => i.transfer))
      .filter((tr) => ids.has(tr.credit_account_id) && msOf(tr.timestamp) >= since);
  }, [accounts.map((a) => a.id).join()]);
  return (
    <Section id="income" title={t("income")}>
      <Loaded state={income}>
        {(received) => {
          const asset = received[0] ?? accounts[0] ?? { asset_code: "", asset_scale: 0 };
          const today = Math.floor(Date.now() / DAY_MS);
          const days = Array.from({ length: DAYS }, (_, i) => ({ day: today - DAYS + 1 + i, minor: 0n }));
          let total = 0n;
          for (const tr of received) {
            const day = Math.floor(msOf(tr.timestamp) / DAY_MS);
            const slot = days.find((d) => d.day === day);
            if (slot) slot.minor += BigInt(tr.amount);
            total += BigInt(tr.amount);
          }
          const data = days.map((d) => ({
            label: new Date(d.day * DAY_MS).toISOString().slice(5, 10),
            value: approx(d.minor.toString(), asset.asset_scale),
            text: money(d.minor.toString(), asset.asset_code, asset.asset_scale),
          }));
          return (
            <>
              <p class="score">
                {t("income_total")}: <strong class="amount" data-testid="income-total">{money(total.toString(), asset.asset_code, asset.asset_scale)}</strong>
              </p>
              <BarChart title={t("income_by_day")} data={data} valueLabel={t("show_numbers")} />
              <Received received={received.slice(0, 25)} />
            </>
          );
        }}
      </Loaded>
    </Section>
  );
}

function Received({ received }) {
  const [refunded, setRefunded] = useState({});
  return (
    <Table
      caption={t("payments_received")}
      rows={received}
      rowKey={(tr) => tr.id}
      empty={t("no_payments")}
      columns={[
        [t("time"), (tr) => when(msOf(tr.timestamp))],
        [t("payment"), (tr) => <code>{tr.id}</code>],
        [t("from_account"), (tr) => tr.debit_account_id],
        [t("amount"), (tr) => <span class="amount">{money(tr.amount, tr.asset_code, tr.asset_scale)}</span>],
        [
          "",
          (tr) =>
            refunded[tr.id] ? (
              <Badge value="refunded" />
            ) : (
              <ActionButton label={`${t("refund")} ${tr.id}`}
                action={async () => {
                  await post(`/v1/transfers/${tr.id}/refunds`, { id: newId() });
                  setRefunded({ ...refunded, [tr.id]: true });
                }}>
                {t("refund")}
              </ActionButton>
            ),
        ],
      ]}
    />
  );
}

// The routes this server prices with HTTP 402 for the merchant's accounts: each route's terms,
// then what each path earned (counted since the server started; the money is in the ledger).
function PricedRoutes() {
  const routes = useLoad(() => get("/v1/x402/routes"), []);
  return (
    <Section id="priced-routes" title={t("priced_routes")}>
      <Loaded state={routes}>
        {({ routes }) => {
          const paths = routes.flatMap((r) => r.paths.map((p) => ({ ...p, route: r })));
          const earned = (r, minor) => <span class="amount">{money(minor, r.asset_code, r.asset_scale)}</span>;
          return (
            <>
              <Table
                caption={t("priced_routes")}
                rows={routes}
                empty={t("no_priced_routes")}
                columns={[
                  [t("route"), (r) => r.description],
                  [t("price"), (r) => earned(r, r.price)],
                  [t("to_account"), (r) => r.pay_to],
                  [t("schemes"), (r) => r.schemes.join(", ")],
                  [t("requests_paid"), (r) => <span data-testid="route-requests">{r.requests_paid}</span>],
                  [t("earned"), (r) => <span data-testid="route-earned">{earned(r, r.earned)}</span>],
                  [t("counted_since"), (r) => when(r.counted_since)],
                ]}
              />
              {paths.length > 0 && (
                <BarChart
                  title={t("earned_by_path")}
                  valueLabel={t("show_numbers")}
                  data={paths.map((p) => ({
                    label: p.path,
                    value: approx(p.earned, p.route.asset_scale),
                    text: `${money(p.earned, p.route.asset_code, p.route.asset_scale)} (${p.requests_paid})`,
                  }))}
                />
              )}
            </>
          );
        }}
      </Loaded>
    </Section>
  );
}

function AnswerForm({ dispute, onDone }) {
  const [statement, setStatement] = useState("");
  const [error, setError] = useState(null);
  const submit = async (accept) => {
    setError(null);
    try {
      await post(`/v1/disputes/${dispute.id}/answer`, { statement, accept });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <form class="inline-form" onSubmit={(e) => { e.preventDefault(); submit(false); }} aria-label={t("answer_dispute")}>
      <label for={`answer-${dispute.id}`}>{t("your_answer")}</label>
      <textarea id={`answer-${dispute.id}`} maxLength={2000} required value={statement} onInput={(e) => setStatement(e.currentTarget.value)} />
      <button type="submit" class="primary">{t("contest")}</button>
      <button type="button" onClick={() => submit(true)}>{t("accept_dispute")}</button>
      <ProblemBox error={error} />
    </form>
  );
}

function MerchantDisputes() {
  const disputes = useLoad(() => get("/v1/disputes?limit=100"), []);
  const [answering, setAnswering] = useState(null);
  return (
    <Section id="disputes" title={t("disputes")}>
      <Loaded state={disputes}>
        {(page) => (
          <>
            <Table
              caption={t("disputes")}
              rows={page.items}
              rowKey={(d) => d.id}
              empty={t("no_disputes")}
              columns={disputeColumns(
                [[t("payer_statement"), (d) => <span class="statement">{d.payer_statement}</span>]],
                [["", (d) => d.status === "open" && !d.payee_statement && (
                  <button type="button" onClick={() => setAnswering(d.id)} aria-expanded={answering === d.id}>{t("answer_dispute")}</button>
                )]],
              )}
            />
            {answering && <AnswerForm dispute={page.items.find((d) => d.id === answering)} onDone={() => { setAnswering(null); disputes.reload(); }} />}
          </>
        )}
      </Loaded>
    </Section>
  );
}

function Deliveries({ id }) {
  const deliveries = useLoad(() => get(`/v1/webhooks/${id}/deliveries`), [id]);
  return (
    <div class="card" data-testid="deliveries">
      <Loaded state={deliveries}>
        {(d) => (
          <>
            <p>
              {t("deliveries_pending", { pending: d.pending })}{" "}
              {d.acknowledged_through && t("acknowledged_through", { when: when(d.acknowledged_through) })}
            </p>
            <Table
              caption={t("deliveries")}
              rows={d.attempts}
              empty={t("no_attempts")}
              columns={[
                [t("time"), (a) => when(a.at)],
                [t("event"), (a) => <code>{a.event}</code>],
                [t("status"), (a) => <Badge value={a.delivered ? "delivered" : "failed"} />],
                [t("answer"), (a) => a.detail],
                [t("retry_at"), (a) => (a.retry_at ? when(a.retry_at) : "")],
              ]}
            />
          </>
        )}
      </Loaded>
    </div>
  );
}

function Webhooks() {
  const hooks = useLoad(() => get("/v1/webhooks"), []);
  const [open, setOpen] = useState(null);
  return (
    <Section id="webhooks" title={t("webhooks")}>
      <Loaded state={hooks}>
        {(items) => (
          <>
            <Table
              caption={t("webhooks")}
              rows={items}
              rowKey={(h) => h.id}
              empty={t("no_webhooks")}
              columns={[
                [t("url"), (h) => <code>{h.url}</code>],
                [t("event_types"), (h) => (h.types.length ? h.types.join(", ") : t("all_events"))],
                [t("added"), (h) => when(h.created_at)],
                ["", (h) => (
                  <button type="button" onClick={() => setOpen(open === h.id ? null : h.id)} aria-expanded={open === h.id}
                    aria-label={`${t("deliveries")} ${h.url}`}>
                    {t("deliveries")}
                  </button>
                )],
              ]}
            />
            {open && <Deliveries id={open} />}
          </>
        )}
      </Loaded>
    </Section>
  );
}

export function Merchant({ me }) {
  const accounts = useLoad(() => get(`/v1/accounts${query({ owner: me.principal.id, limit: 100 })}`), []);
  return (
    <>
      <h1>{t("page.merchant")}</h1>
      <Loaded state={accounts}>
        {(page) => (
          <>
            <Income accounts={page.items} />
            <TabList id="open-tabs" title={t("open_tabs")} accounts={page.items} side="payee" filters={{ status: "open" }}
              counterparty={t("from_account")} />
            <PricedRoutes />
            <MerchantDisputes />
            <Webhooks />
          </>
        )}
      </Loaded>
    </>
  );
}
