//! A tick's claim (`LockConfiguration::for_tick`): in one transaction, the
//! name's tick row is locked (made first if missing), the last claimed tick
//! read, the lock taken, and the claim recorded, or nothing at all. Claimers
//! of one name take turns on the tick row, so the second of two replicas
//! that fire for one tick reads the first one's claim, however soon the
//! first released the lock.

use std::time::{Duration, SystemTime};

use shedlock_core::LockError;

use crate::dialect::{Dialect, Statements};
use crate::driver::Driver;

use crate::table::check_admin_name;

use super::kinds::locked_row;
use super::pool::Checkout;
use super::runner::{answer, execute};
use super::*;

impl<D: Dialect> SqlEngine<D> {
    /// Takes the lock of `lease` for its tick: `Ok(Some(token))` when taken
    /// (the tick claimed before is kept in `lease.previous_tick`),
    /// `Ok(None)` when this tick or a later one was claimed, or the lock is
    /// held or paused. Each statement is bounded by `timeout`, as is the
    /// transaction on the server's side (`Dialect::kinds_begin`).
    pub(super) async fn claim_tick(
        &self,
        connection: &mut Checkout<D::Db>,
        statements: &Statements,
        lease: &LeaseRow,
        params: &LeaseParams<'_, D>,
        timeout: Duration,
    ) -> Result<Option<u64>, Failure> {
        let (ticks, tick) = (&statements.ticks, params.tick.unwrap_or(0));
        // The name's row is made only when missing (its first claim, or
        // after a prune), as the lock kinds make theirs: then everything is
        // done again, on the row now there.
        // The locking read answers the last tick too: the latest one
        // committed, read once the row is ours.
        let mut made = false;
        let (mut transaction, row) = loop {
            let mut transaction = Self::begin(connection, timeout).await?;
            let row = locked_row::<D>(&mut transaction, &ticks.lock_row, params, timeout).await?;
            if row.is_some() || made {
                break (transaction, row);
            }
            answer(timeout, transaction.rollback()).await?;
            execute::<D>(&mut **connection, &ticks.ensure_row, params, timeout).await?;
            made = true;
        };
        let last = row
            .map(|row| D::Db::int(&row, 0))
            .transpose()
            .map_err(Failure::of)?
            .flatten()
            .filter(|last| *last >= 0);
        if last.is_some_and(|last| last >= tick) {
            answer(timeout, transaction.rollback()).await?;
            return Ok(None);
        }
        let Some(token) =
            Self::acquire_exclusive(&mut transaction, statements, params, timeout).await?
        else {
            answer(timeout, transaction.rollback()).await?;
            return Ok(None);
        };
        execute::<D>(&mut *transaction, &ticks.claim, params, timeout).await?;
        answer(timeout, transaction.commit()).await?;
        let _ = lease.previous_tick.set(last);
        Ok(Some(token))
    }
}

impl<D: Dialect> SqlLocks<D> {
    /// The last tick claimed under `name`, if any.
    pub(crate) async fn last_tick(&self, name: &str) -> Result<Option<SystemTime>, LockError> {
        check_admin_name(name)?;
        let statements = &self.prepared().await?.statements;
        let ticks = self
            .engine
            .fetch_rows(&statements.ticks.last, name, self.timeout, |row| {
                D::Db::int(row, 0)
            })
            .await
            .map_err(|failure| {
                self.admin_error(failure, format!("reading the last tick of lock '{name}'"))
            })?;
        let last = ticks.into_iter().flatten().find(|tick| *tick >= 0);
        Ok(last.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())))
    }
}
