// The analyst's page: the review queue (each held payment with the rule, the model's score and
// the features that pushed it, then approve or decline), the rules in force with their versions
// and change history, and an editor that runs a bundle in shadow mode beside the live policy and
// shows the decisions it would change.
import { useState } from "preact/hooks";
import { api, get, post } from "./api.js";
import { t, when } from "./i18n.js";
import { money } from "./money.js";
import { BarChart, LineChart } from "./charts.jsx";
import { Badge, Loaded, ProblemBox, Section, Table, msOf, useLoad } from "./ui.jsx";

function reasonOf(risk) {
  return document.documentElement.lang === "ko" ? risk.reason_ko ?? risk.reason_en : risk.reason_en;
}

function ReviewDetail({ id, onDecided }) {
  const review = useLoad(() => get(`/v1/risk/reviews/${id}`), [id]);
  const [note, setNote] = useState("");
  const [error, setError] = useState(null);
  const decide = async (decision) => {
    setError(null);
    try {
      await post(`/v1/risk/reviews/${id}/decision`, { decision, note: note || undefined });
      onDecided();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <Loaded state={review}>
      {(r) => (
        <div class="card review" aria-label={t("review")}>
          <h3>{t("review")} <code>{r.id}</code></h3>
          <dl>
            <dt>{t("amount")}</dt><dd class="amount">{money(r.amount, r.asset_code, r.asset_scale)}</dd>
            <dt>{t("from_account")}</dt><dd>{r.payer_account_id}</dd>
            <dt>{t("to_account")}</dt><dd>{r.payee_account_id}</dd>
            <dt>{t("why")}</dt><dd class="reason">{reasonOf(r.risk)}</dd>
            {r.risk.rule && (<><dt>{t("rule")}</dt><dd><code>{r.risk.rule}</code></dd></>)}
            {r.risk.model_score !== undefined && (<><dt>{t("model_score")}</dt><dd>{r.risk.model_score.toFixed(3)}</dd></>)}
          </dl>
          {r.shapley?.length > 0 && (
            <BarChart title={t("contributions")} valueLabel={t("show_numbers")}
              data={r.shapley.slice(0, 8).map((c) => ({ label: c.feature, value: Math.abs(c.value), text: c.value.toFixed(3) }))} />
          )}
          {r.status === "pending" ? (
            <form onSubmit={(e) => e.preventDefault()} aria-label={t("decision")}>
              <label for="review-note">{t("note")}</label>
              <textarea id="review-note" maxLength={2000} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
              <div class="buttons">
                <button type="button" class="primary" onClick={() => decide("approve")}>{t("approve")}</button>
                <button type="button" class="danger" onClick={() => decide("decline")}>{t("decline")}</button>
              </div>
              <ProblemBox error={error} />
            </form>
          ) : (
            <p><Badge value={r.status} /> {r.note && <span class="statement">{r.note}</span>}</p>
          )}
        </div>
      )}
    </Loaded>
  );
}

function Queue() {
  const queue = useLoad(() => get("/v1/risk/reviews?status=pending&limit=100"), []);
  const [open, setOpen] = useState(null);
  return (
    <Section id="queue" title={t("review_queue")}>
      <Loaded state={queue}>
        {(page) => (
          <>
            <Table
              caption={t("review_queue")}
              rows={page.items}
              rowKey={(r) => r.id}
              empty={t("queue_empty")}
              columns={[
                [t("time"), (r) => when(msOf(r.created_ns))],
                [t("amount"), (r) => money(r.amount, r.asset_code, r.asset_scale)],
                [t("why"), (r) => <span class="reason">{reasonOf(r.risk)}</span>],
                ["", (r) => (
                  <button type="button" onClick={() => setOpen(r.id)} aria-expanded={open === r.id} aria-label={`${t("open_review")} ${r.id}`}>
                    {t("open_review")}
                  </button>
                )],
              ]}
            />
            {open && <ReviewDetail id={open} onDecided={() => { setOpen(null); queue.reload(); }} />}
          </>
        )}
      </Loaded>
    </Section>
  );
}

function Rules() {
  const policy = useLoad(() => Promise.all([get("/v1/risk/policy"), get("/v1/risk/policy/changes")]), []);
  return (
    <Section id="rules" title={t("rules")}>
      <Loaded state={policy}>
        {([live, changes]) => (
          <>
            <Table
              caption={t("rules")}
              rows={live.in_force}
              columns={[
                [t("bundle"), (b) => <code>{b.name}</code>],
                [t("version"), (b) => b.version],
                [t("rules"), (b) => b.rules.join(", ")],
                [t("description"), (b) => b.description],
              ]}
            />
            <p class="muted">{t("decided_counts", live.decided)}</p>
            <h3>{t("changes")}</h3>
            <Table
              caption={t("changes")}
              rows={changes.slice().reverse().slice(0, 20)}
              empty={t("none")}
              columns={[
                [t("time"), (c) => when(msOf(c.at_ns))],
                [t("bundle"), (c) => <code>{c.bundle}</code>],
                [t("what"), (c) => c.what],
                [t("who"), (c) => c.who],
                [t("diff"), (c) => <details><summary>{t("show_diff")}</summary><pre class="diff">{c.diff}</pre></details>],
              ]}
            />
          </>
        )}
      </Loaded>
    </Section>
  );
}

function Editor() {
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const [version, setVersion] = useState(0);
  const shadow = useLoad(() => get("/v1/risk/shadow").catch((e) => (e.code === "no_shadow" ? null : Promise.reject(e))), [version]);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      await api("POST", "/v1/risk/policy?shadow=true", text);
      setVersion(version + 1);
    } catch (e) {
      setError(e);
    }
  };
  const stop = async () => {
    await api("DELETE", "/v1/risk/shadow");
    setVersion(version + 1);
  };
  return (
    <Section id="editor" title={t("shadow_editor")}>
      <form onSubmit={submit}>
        <label for="bundle">{t("bundle_toml")}</label>
        <textarea id="bundle" class="code" rows={12} spellcheck={false} value={text} onInput={(e) => setText(e.currentTarget.value)} required />
        <button type="submit" class="primary">{t("run_in_shadow")}</button>
        <ProblemBox error={error} />
      </form>
      <Loaded state={shadow}>
        {(s) =>
          s ? (
            <div class="card">
              <p>{t("shadow_summary", { candidate: s.candidate.join(", "), evaluated: s.evaluated, differed: s.differed })}</p>
              <Table
                caption={t("would_change")}
                rows={s.differences.slice().reverse().slice(0, 50)}
                empty={t("no_differences")}
                columns={[
                  [t("from_account"), (d) => d.payer_account_id],
                  [t("to_account"), (d) => d.payee_account_id],
                  [t("amount"), (d) => d.amount],
                  [t("live"), (d) => d.live],
                  [t("candidate"), (d) => d.candidate],
                ]}
              />
              <button type="button" onClick={stop}>{t("stop_shadow")}</button>
            </div>
          ) : (
            <p class="muted">{t("no_shadow_running")}</p>
          )
        }
      </Loaded>
    </Section>
  );
}

/** The model's held-out metrics: the precision-recall curve, the confusion matrix at the
 * threshold that catches 80% of fraud, and what the trees split on. */
function ModelMetrics() {
  const model = useLoad(() => get("/v1/risk/model").catch((e) => (e.code === "no_model" ? null : Promise.reject(e))), []);
  const share = (x) => `${(x * 100).toFixed(1)}%`;
  return (
    <Section id="model" title={t("model")}>
      <Loaded state={model}>
        {(m) =>
          !m ? (
            <p class="muted">{t("no_model_loaded")}</p>
          ) : (
            <>
              <dl>
                <dt>{t("model_version")}</dt><dd><code>{m.version}</code></dd>
                <dt>{t("held_out_rows")}</dt><dd>{m.metrics.rows} ({m.metrics.positives} {t("fraud")})</dd>
                <dt>AUPRC</dt><dd data-testid="auprc">{m.metrics.auprc.toFixed(3)} ({m.metrics.auprc_ci_low.toFixed(3)} – {m.metrics.auprc_ci_high.toFixed(3)})</dd>
                <dt>ROC AUC</dt><dd>{m.metrics.roc_auc.toFixed(3)}</dd>
                <dt>{t("precision_at_80")}</dt><dd>{share(m.metrics.precision_at_80_recall)}</dd>
                <dt>{t("threshold")}</dt><dd>{m.metrics.threshold.toFixed(4)}</dd>
              </dl>
              {m.metrics.pr_curve.length > 0 && (
                <LineChart title={t("pr_curve")} xLabel={t("recall")} yLabel={t("precision")}
                  points={m.metrics.pr_curve.map((p) => [p.recall, p.precision])} />
              )}
              <table class="confusion">
                <caption>{t("confusion_matrix")}</caption>
                <thead>
                  <tr><td></td><th scope="col">{t("flagged")}</th><th scope="col">{t("passed")}</th></tr>
                </thead>
                <tbody>
                  <tr><th scope="row">{t("actual_fraud")}</th><td class="num">{m.metrics.confusion.true_positives}</td><td class="num">{m.metrics.confusion.false_negatives}</td></tr>
                  <tr><th scope="row">{t("actual_good")}</th><td class="num">{m.metrics.confusion.false_positives}</td><td class="num">{m.metrics.confusion.true_negatives}</td></tr>
                </tbody>
              </table>
              {m.importance.length > 0 && (
                <BarChart title={t("feature_importance")} valueLabel={t("show_numbers")}
                  data={m.importance.slice(0, 10).map((f) => ({ label: f.feature, value: f.share, text: share(f.share) }))} />
              )}
            </>
          )
        }
      </Loaded>
    </Section>
  );
}

export function Analyst() {
  return (
    <>
      <h1>{t("page.analyst")}</h1>
      <Queue />
      <ModelMetrics />
      <Rules />
      <Editor />
    </>
  );
}
