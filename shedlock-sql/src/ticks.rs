//! The statements of a tick's claim (`LockConfiguration::for_tick`), run in
//! one transaction with the acquisition (`engine::ticks`): the name's row of
//! `<table>_ticks` is made if missing and locked first, so claimers of one
//! name take turns, and each reads the tick the one before it claimed.

use crate::dialect::{Dialect, LeaseParam, Statement};
use crate::statements::{Tables, batch_limit};
use crate::template::compile;

/// The statements of a tick's claim, in the order they run.
pub(crate) struct TickStatements {
    /// Makes the name's row (no tick claimed yet) if it is missing.
    pub(crate) ensure_row: Statement<LeaseParam>,
    /// Locks the name's row until the transaction ends, answering the last
    /// tick claimed (negative: none yet).
    pub(crate) lock_row: Statement<LeaseParam>,
    /// The last tick claimed (negative: none yet), for operators.
    pub(crate) last: Statement<LeaseParam>,
    /// Records the claim of `:tick` by `:locked_by`, keeping the tick before.
    pub(crate) claim: Statement<LeaseParam>,
    /// Removes the rows of names with no lock row (`prune`).
    pub(crate) prune: Statement<LeaseParam>,
}

impl TickStatements {
    /// Every statement, for the checks of their parameters.
    #[cfg(test)]
    pub(crate) fn every(&self) -> [&Statement<LeaseParam>; 5] {
        [
            &self.ensure_row,
            &self.lock_row,
            &self.last,
            &self.claim,
            &self.prune,
        ]
    }
}

/// The tick statements of `tables` on `D`'s database.
pub(crate) fn statements<D: Dialect>(tables: &Tables) -> TickStatements {
    let Tables { table, ticks, .. } = tables;
    let (insert_ignore, ignore_tail) = D::KIND.insert_ignore(ticks);
    let now = D::KIND.now_in_transaction();
    TickStatements {
        ensure_row: compile::<D>(&format!(
            "{insert_ignore} (name, last_tick, previous_tick, claimed_at, claimed_by) \
             VALUES (:name, -1, NULL, {now}, ''){ignore_tail}"
        )),
        lock_row: compile::<D>(&D::lock_row(ticks, "last_tick")),
        last: compile::<D>(&format!("SELECT last_tick FROM {ticks} WHERE name = :name")),
        // MySQL assigns left to right: `previous_tick` reads the old tick.
        claim: compile::<D>(&format!(
            "UPDATE {ticks} SET previous_tick = last_tick, last_tick = {tick}, \
             claimed_at = {now}, claimed_by = :locked_by WHERE name = :name",
            tick = D::KIND.typed_param(":tick", "bigint"),
        )),
        prune: compile::<D>(&format!(
            "DELETE FROM {ticks} WHERE NOT EXISTS \
             (SELECT 1 FROM {table} l WHERE l.name = {ticks}.name){limit}",
            limit = batch_limit::<D>(),
        )),
    }
}
