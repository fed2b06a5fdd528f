// Shared pieces of every page: loading data, showing a refusal in plain words, tables, forms.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { Problem, api, approvalHeader, get, post, query } from "./api.js";
import { passkeysAvailable, signWithPasskey } from "./webauthn.js";
import { explanation, t, when } from "./i18n.js";
import { money } from "./money.js";

/** Loads `load()` when `deps` change; answers {data, error, loading, reload}. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}

/** A refusal in the page's language: what happened and what to do next, from the catalogue
 * (the API's own explanation of the code). Text only: nothing from the server becomes markup. */
export function ProblemBox({ error }) {
  if (!error) return null;
  const lang = document.documentElement.lang;
  let what = error.message;
  let next = null;
  if (error instanceof Problem) {
    const given = error.body.explanation?.[lang] ?? explanation(error.code);
    if (given) {
      what = given.what;
      next = given.next;
    } else if (error.body.detail) {
      what = error.body.detail;
    }
  }
  return (
    <div class="problem" role="alert">
      <p>{what}</p>
      {next && <p class="next">{next}</p>}
    </div>
  );
}

/** A section of a page with a heading. */
export function Section({ id, title, children, actions }) {
  return (
    <section aria-labelledby={`${id}-title`} id={id}>
      <div class="section-head">
        <h2 id={`${id}-title`}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

/** What a load shows while it runs or when it failed; `children(data)` otherwise. */
export function Loaded({ state, children }) {
  if (state.error) return <ProblemBox error={state.error} />;
  if (state.loading && !state.data) return <p class="muted">{t("loading")}</p>;
  return children(state.data);
}

/** A table: `columns` is [[heading, cell(row)]]; `empty` shows when there are no rows. */
export function Table({ caption, columns, rows, empty, rowKey }) {
  if (!rows || rows.length === 0) return <p class="muted">{empty ?? t("none")}</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {columns.map(([heading]) => (
              <th scope="col">{heading}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={rowKey ? rowKey(row) : i}>
              {columns.map(([, cell]) => (
                <td>{cell(row)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A button that runs `action` once at a time and shows its refusal, if any. */
export function ActionButton({ action, children, kind, label }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const click = async () => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={kind ?? ""} onClick={click} disabled={busy} aria-label={label}>
        {children}
      </button>
      <ProblemBox error={error} />
    </span>
  );
}

/** A status word as a badge (text, not colour alone). */
export function Badge({ value }) {
  const key = `status.${value}`;
  const text = t(key);
  return <span class={`badge badge-${String(value).replace(/[^a-z_]/g, "")}`}>{text === key ? value : text}</span>;
}

/** A ns-since-epoch string as milliseconds. */
export function msOf(ns) {
  try {
    return Number(BigInt(ns) / 1000000n);
  } catch {
    return NaN;
  }
}

/** The columns of a dispute list, both parties' pages alike: `middle` goes after the reason,
 * `last` after the deadlines. */
export function disputeColumns(middle, last) {
  return [
    [t("payment"), (d) => <code>{d.payment}</code>],
    [t("amount"), (d) => money(d.amount, d.asset, d.scale)],
    [t("dispute_reason"), (d) => t(`dispute_reason.${d.reason}`)],
    ...middle,
    [t("status"), (d) => <Badge value={d.status} />],
    [t("answer_by"), (d) => d.deadlines.payee_answer_by],
    [t("resolve_by"), (d) => d.deadlines.resolve_by],
    ...last,
  ];
}

/** The tabs of `accounts` on one `side` (`payer` or `payee`, plus any other filter in
 * `filters`), with escrow and what is owed in the account's own asset; `counterparty` names
 * the other side's column. Both parties' pages show tabs this way. */
export function TabList({ accounts, side, filters, counterparty, showStatus, title, id }) {
  const tabs = useLoad(
    () =>
      Promise.all(
        accounts.map((a) =>
          get(`/v1/tabs${query({ [side]: a.id, limit: 100, ...filters })}`).then((page) =>
            page.items.map((tab) => ({ tab, account: a })),
          ),
        ),
      ).then((pages) => pages.flat()),
    [accounts.map((a) => a.id).join()],
  );
  const amount = (value, account) => money(value, account.asset_code, account.asset_scale);
  const other = side === "payer" ? (tab) => tab.payee_account_id : (tab) => tab.payer_account_id;
  return (
    <Section id={id} title={title}>
      <Loaded state={tabs}>
        {(items) => (
          <Table
            caption={title}
            rows={items}
            rowKey={({ tab }) => tab.id}
            empty={t("no_tabs")}
            columns={[
              [t("tab"), ({ tab }) => <code>{tab.id}</code>],
              [counterparty, ({ tab }) => other(tab)],
              [t("escrow"), ({ tab, account }) => amount(tab.escrow, account)],
              [t("owed"), ({ tab, account }) => amount(tab.cumulative, account)],
              ...(showStatus ? [[t("status"), ({ tab }) => <Badge value={tab.status} />]] : []),
              [t("expires"), ({ tab }) => when(msOf(tab.expires_ns))],
            ]}
          />
        )}
      </Loaded>
    </Section>
  );
}

/** Step-up in the page: `run(action)` calls `action(approval)` (`post(path, body)` is `run` for
 * one POST); when the API answers
 * `requires_action` (the holder's second factor must approve exactly this change), `form`
 * asks for a code from the authenticator app, a recovery code or a passkey, approves the
 * challenge, and calls `action` again with it. `run` settles when the change is done or the
 * person cancels (then it answers undefined). */
export function useStepUp() {
  const [ask, setAsk] = useState(null);
  const run = async (action) => {
    try {
      return await action(undefined);
    } catch (e) {
      if (!(e instanceof Problem) || e.code !== "requires_action" || !e.body.challenge) throw e;
      return new Promise((resolve) => {
        // One approval at a time: a new one ends the one waiting (its change is not made).
        setAsk((waiting) => {
          waiting?.cancel();
          return {
          challenge: e.body.challenge,
            retry: async () => resolve(await action(e.body.challenge.id)),
            cancel: () => resolve(undefined),
          };
        });
      });
    }
  };
  const form = ask && <ApprovalForm key={ask.challenge.id} ask={ask} done={() => setAsk(null)} />;
  /** POSTs `body` to `path` through `run`, the approval (once there is one) in its header. */
  const post = (path, body) => run((approval) => api("POST", path, body, approvalHeader(approval)));
  return { run, post, form };
}

function ApprovalForm({ ask, done }) {
  const [code, setCode] = useState("");
  const [error, setError] = useState(null);
  const input = useRef(null);
  useEffect(() => input.current?.focus(), []);
  const id = ask.challenge.id;
  const approve = async (body) => {
    setError(null);
    try {
      await post(`/v1/challenges/${id}/approve`, body);
      await ask.retry();
      done();
    } catch (e) {
      setError(e);
    }
  };
  const withCode = (event) => {
    event.preventDefault();
    const typed = code.trim();
    approve(/^\d{6,8}$/.test(typed) ? { code: typed } : { recovery_code: typed });
  };
  const withPasskey = async () => {
    setError(null);
    try {
      const started = await post(`/v1/challenges/${id}/passkey`);
      const credential = await signWithPasskey(started.options);
      await approve({ passkey: { ceremony_id: started.ceremony_id, credential } });
    } catch (e) {
      setError(e);
    }
  };
  const canPasskey = (ask.challenge.methods ?? []).includes("passkey") && passkeysAvailable();
  return (
    <form class="card approval" onSubmit={withCode} aria-label={t("approve_change")} data-testid="approval">
      <p>{t("approve_change_why")}</p>
      {ask.challenge.details && (
        <p>
          {t("approval_for")}: <code data-testid="approval-details">{ask.challenge.details}</code>
        </p>
      )}
      <label for={`approval-${id}`}>{t("approval_code")}</label>
      <input id={`approval-${id}`} ref={input} autoComplete="one-time-code" value={code} required
        onInput={(e) => setCode(e.currentTarget.value)} />
      <div class="buttons">
        <button type="submit" class="primary">{t("approve")}</button>
        {canPasskey && <button type="button" onClick={withPasskey}>{t("approve_with_passkey")}</button>}
        <button type="button" onClick={() => { ask.cancel(); done(); }}>{t("cancel")}</button>
      </div>
      <ProblemBox error={error} />
    </form>
  );
}
