//! How a step-up approval reaches the record log: an issued challenge is journaled before the
//! refusal that carries it is answered (so it can be approved across a restart), and an approval
//! is spent in the same record as the operation it approved (so a crash leaves both or neither).
//! Below `stepup`, which decides, and the use cases that spend approvals.

use crate::App;
use crate::error::Error;

/// Where open challenges are journaled in the state table, by id.
pub(crate) const CHALLENGE_PREFIX: &str = "stepup/challenge/";

/// The put that journals challenge `id` as used: its key removed, in the same record as the
/// operation it approved, so a crash leaves either both (the approval spent, the operation made)
/// or neither.
pub(crate) fn spent(id: &str) -> obol_core::record::Op {
    obol_core::record::Op::Put(obol_core::table::Put { key: format!("{CHALLENGE_PREFIX}{id}"), value: Vec::new() })
}

/// Journals the challenge a refusal carries (`requires_action`) before the refusal is answered,
/// so the holder can approve it, and the payer spend the approval, across a restart. Answers
/// `result` unchanged, or the store's error.
pub(crate) async fn journaled<T>(state: &App, result: Result<T, Error>) -> Result<T, Error> {
    if let Err(Error::RequiresAction(challenge)) = &result
        && let Some(bytes) = state.step_up.encoded(&challenge.id)
    {
        state.engine.put(&format!("{CHALLENGE_PREFIX}{}", challenge.id), bytes).await?;
    }
    result
}

/// Runs `op` in one record with the spending of approval `spends` (if any): both durable, or
/// neither. Answers the op's result.
pub(crate) async fn execute_spending(
    state: &App,
    spends: Option<&str>,
    op: obol_core::record::Op,
) -> Result<obol_core::ledger::OpResults, Error> {
    execute_spending_with(state, spends, op, Vec::new()).await
}

/// [`execute_spending`], with `also` (alert events) in the same record after the op.
pub(crate) async fn execute_spending_with(
    state: &App,
    spends: Option<&str>,
    op: obol_core::record::Op,
    also: Vec<obol_core::record::Op>,
) -> Result<obol_core::ledger::OpResults, Error> {
    if spends.is_none() && also.is_empty() {
        return Ok(state.engine.execute(op).await?);
    }
    let at = usize::from(spends.is_some());
    let ops = [spends.map(spent).into_iter().collect(), vec![op], also].concat();
    let results = state.engine.execute_together(ops).await?;
    results.into_iter().nth(at).ok_or_else(|| Error::Internal("a record answered nothing".into()))
}
