//! `LockAdmin` on the SQL tables: a lock's state from its row (a live
//! exclusive lease, by the database's clock), its shared holders and
//! queued exclusive waiters, and its companion settings row; capacity,
//! pause and resume in the settings table; force-release ends every lease
//! now. Each change is one statement, or one transaction.

use std::time::{Duration, SystemTime};

use shedlock_core::{LockError, LockHolder, LockMode, LockState, validate_capacity};

use std::collections::HashMap;

use super::kinds::{HolderRow, merge_kinds};
use super::{Failure, LeaseParams, SqlEngine, SqlLocks};
use crate::dialect::{Dialect, LeaseParam, Statement};
use crate::driver::Driver;
use crate::table::{check_admin_name, holder_of};

/// The longest `unused_for` a prune takes: 1000 years (of 365.25 days, as
/// humantime counts them). No lock row is older, and PostgreSQL's interval
/// arithmetic would overflow not far above 290,000 years.
const MAX_UNUSED_FOR: Duration = Duration::from_secs(1000 * 31_557_600);

/// One answer row of `lock_state` or `list_locks` (see `AdminStatements`).
struct StateRow {
    locked_by: Option<String>,
    locked_at_ms: Option<i64>,
    lease_left_ms: Option<i64>,
    fencing_token: Option<i64>,
    capacity: Option<i64>,
    /// The exclusive holder's renewals and milliseconds since the last.
    renewals: Option<i64>,
    renewed_ago_ms: Option<i64>,
    /// Only in `list_locks`' rows.
    name: Option<String>,
}

impl StateRow {
    fn read<DB: Driver>(row: &DB::Row, with_name: bool) -> Result<StateRow, sqlx::Error> {
        Ok(StateRow {
            locked_by: DB::text(row, 0)?,
            locked_at_ms: DB::int(row, 1)?,
            lease_left_ms: DB::int(row, 2)?,
            fencing_token: DB::int(row, 3)?,
            capacity: DB::int(row, 4)?,
            renewals: DB::int(row, 5)?,
            renewed_ago_ms: DB::int(row, 6)?,
            name: if with_name { DB::text(row, 7)? } else { None },
        })
    }

    /// The lock `name` as this row describes it.
    fn into_state(self, name: String) -> LockState {
        let holder = self.locked_by.map(|locked_by| LockHolder {
            locked_by: holder_of(&locked_by).to_owned(),
            locked_at: self
                .locked_at_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            lease_left: self
                .lease_left_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            mode: LockMode::Exclusive,
            // 0: a row ShedLock for Java took (it leaves the column at its default).
            fencing_token: self
                .fencing_token
                .and_then(|token| u64::try_from(token).ok())
                .filter(|token| *token > 0),
            // Recorded from the first renewal on.
            renewed_ago: self
                .renewed_ago_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            renewals: self
                .renewals
                .and_then(|renewals| u64::try_from(renewals).ok()),
        });
        let capacity = self
            .capacity
            .map(|capacity| u32::try_from(capacity).unwrap_or(u32::MAX));
        LockState {
            name,
            holders: holder.into_iter().collect(),
            capacity,
            paused: capacity == Some(0),
            exclusive_waiters: 0,
        }
    }
}

impl<D: Dialect> SqlEngine<D> {
    /// What `states`, `holders` and `waiters` answer for `name` (every
    /// name when empty): the lock rows (with their names, for every name),
    /// the live shared holders and the queued exclusive waiters.
    async fn read_locks(
        &self,
        [states, holders, waiters]: [&Statement<LeaseParam>; 3],
        name: &str,
        timeout: Duration,
    ) -> Result<(Vec<StateRow>, Vec<HolderRow>, HashMap<String, u32>), Failure> {
        let with_name = name.is_empty();
        let rows = self
            .fetch_rows(states, name, timeout, |row| {
                StateRow::read::<D::Db>(row, with_name)
            })
            .await?;
        let holders = self
            .fetch_rows(holders, name, timeout, HolderRow::read::<D::Db>)
            .await?;
        let waiters = self
            .fetch_rows(waiters, name, timeout, |row| {
                let name = D::Db::text(row, 0)?.unwrap_or_default();
                let count = D::Db::int(row, 1)?.unwrap_or(0);
                Ok((name, u32::try_from(count).unwrap_or(u32::MAX)))
            })
            .await?;
        Ok((rows, holders, waiters.into_iter().collect()))
    }
}

impl<D: Dialect> SqlLocks<D> {
    /// The state of `name`: its live leases, queued exclusive waiters and
    /// stored capacity.
    pub(crate) async fn lock_state(&self, name: &str) -> Result<LockState, LockError> {
        check_admin_name(name)?;
        let statements = &self.prepared().await?.statements;
        let (admin, kinds) = (&statements.admin, &statements.kinds);
        let read = [&admin.lock_state, &kinds.holders_of, &kinds.waiters_of];
        let (rows, holders, waiters) = self
            .engine
            .read_locks(read, name, self.timeout)
            .await
            .map_err(|failure| self.admin_error(failure, format!("reading lock '{name}'")))?;
        let state = rows.into_iter().next().map_or_else(
            || StateRow::free().into_state(name.to_owned()),
            |row| row.into_state(name.to_owned()),
        );
        // Every row the statements matched is this lock's, whatever case
        // or trailing spaces it was written with (MySQL's collations).
        let holders = holders
            .into_iter()
            .map(|row| HolderRow {
                name: state.name.clone(),
                ..row
            })
            .collect();
        let waiters = [(state.name.clone(), waiters.values().sum())].into();
        let mut states = vec![state];
        merge_kinds(&mut states, holders, waiters);
        Ok(states.swap_remove(0))
    }

    /// Every lock held now or with a stored capacity, sorted by name.
    pub(crate) async fn list_locks(&self) -> Result<Vec<LockState>, LockError> {
        let statements = &self.prepared().await?.statements;
        let (admin, kinds) = (&statements.admin, &statements.kinds);
        let read = [&admin.list_locks, &kinds.holders, &kinds.waiters];
        let (rows, holders, waiters) = self
            .engine
            .read_locks(read, "", self.timeout)
            .await
            .map_err(|failure| self.admin_error(failure, "listing locks".to_owned()))?;
        let mut locks: Vec<LockState> = rows
            .into_iter()
            .filter_map(|mut row| {
                let name = row.name.take()?;
                Some(row.into_state(name))
            })
            .collect();
        merge_kinds(&mut locks, holders, waiters);
        // The same order on every store: by bytes, not by the database's collation.
        locks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(locks)
    }

    /// Stores `capacity` for `name` (0 pauses it).
    pub(crate) async fn set_capacity(&self, name: &str, capacity: u32) -> Result<(), LockError> {
        check_admin_name(name)?;
        validate_capacity(capacity)?;
        let action = || format!("setting the capacity of lock '{name}'");
        self.store_capacity(name, capacity, action).await?;
        tracing::info!(lock = %name, capacity, "lock capacity set");
        if capacity > 0 {
            // Waiters of this process on a paused lock may go now.
            self.releases.notify_released(name);
        }
        Ok(())
    }

    /// Pauses `name`: capacity 0, the capacity before it kept for the resume.
    pub(crate) async fn pause(&self, name: &str) -> Result<(), LockError> {
        check_admin_name(name)?;
        self.store_capacity(name, 0, || format!("pausing lock '{name}'"))
            .await?;
        tracing::info!(lock = %name, "lock paused");
        Ok(())
    }

    /// Ends the pause of `name`, if it is paused: the capacity from before it.
    pub(crate) async fn resume(&self, name: &str) -> Result<(), LockError> {
        check_admin_name(name)?;
        let statements = &self.prepared().await?.statements.admin;
        let [forget, restore] = &statements.resume;
        let resumed = self
            .engine
            .change(
                &[forget, restore],
                None,
                LeaseParams::of_name(name),
                self.timeout,
            )
            .await
            .map_err(|failure| self.admin_error(failure, format!("resuming lock '{name}'")))?
            .iter()
            .sum::<u64>();
        if resumed > 0 {
            tracing::info!(lock = %name, "lock resumed");
            self.releases.notify_released(name);
        }
        Ok(())
    }

    /// Ends the live leases of `name` now; how many there were (the
    /// exclusive holder, or the shared ones). On ShedLock for Java's table
    /// alone (no companion tables), the lease of its row.
    pub(crate) async fn force_release(&self, name: &str) -> Result<usize, LockError> {
        check_admin_name(name)?;
        let tables = self.lock_table_statements().await?;
        let (admin, kinds) = (&tables.statements.admin, &tables.statements.kinds);
        let steps = if tables.holders {
            [&kinds.lock_row, &kinds.end_holders, &admin.force_release].to_vec()
        } else {
            [&kinds.lock_row, &admin.force_release].to_vec()
        };
        let changed = self
            .engine
            .change(&steps, None, LeaseParams::of_name(name), self.timeout)
            .await
            .map_err(|failure| {
                self.admin_error(failure, format!("force-releasing lock '{name}'"))
            })?;
        // Live shared holders, or else the row's lease (an exclusive holder's;
        // the shared marker's is live only while a shared holder is).
        let released = match changed[..] {
            [_, shared, _] if shared > 0 => shared,
            [.., row] => row,
            [] => 0,
        };
        tracing::warn!(lock = %name, holders = released, "lock force-released");
        if released > 0 {
            self.releases.notify_released(name);
        }
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    /// Deletes the rows of locks whose last lease ended more than
    /// `unused_for` ago, and their runs and claimed ticks; how many locks.
    pub(crate) async fn prune(&self, unused_for: Duration) -> Result<u64, LockError> {
        if unused_for > MAX_UNUSED_FOR {
            return Err(LockError::InvalidConfiguration(format!(
                "unused_for is {} days; a prune takes at most 1000years (365250d): no lock row \
                 is older",
                unused_for.as_secs() / 86_400
            )));
        }
        let statements = &self.prepared().await?.statements;
        let params = LeaseParams {
            unused_for,
            ..LeaseParams::of_name("")
        };
        let pruned = self
            .engine
            .change(
                &[
                    &statements.admin.prune,
                    &statements.runs.prune,
                    &statements.kinds.prune[0],
                    &statements.kinds.prune[1],
                    &statements.ticks.prune,
                ],
                statements.admin.prune_batch,
                params,
                self.timeout,
            )
            .await
            .map_err(|failure| {
                failure.into_error::<D>(
                    &self.server,
                    format!("pruning the rows of locks unused for {unused_for:?}"),
                    "nothing was pruned; if it ran out of time, give each statement more \
                     (the provider's with_statement_timeout, the shedlock command's --timeout) \
                     and prune again",
                )
            })?
            .first()
            .copied()
            .unwrap_or(0);
        tracing::info!(table = %self.table, pruned, ?unused_for, "unused lock rows pruned");
        Ok(pruned)
    }

    async fn store_capacity(
        &self,
        name: &str,
        capacity: u32,
        action: impl Fn() -> String,
    ) -> Result<(), LockError> {
        let statements = &self.prepared().await?.statements.admin;
        let params = LeaseParams {
            capacity,
            ..LeaseParams::of_name(name)
        };
        self.engine
            .change(&[&statements.set_capacity], None, params, self.timeout)
            .await
            .map_err(|failure| self.admin_error(failure, action()))?;
        Ok(())
    }

    pub(super) fn admin_error(&self, failure: Failure, action: String) -> LockError {
        failure.into_error::<D>(&self.server, action, "nothing was changed")
    }
}

impl StateRow {
    /// A lock nobody holds and with no stored capacity.
    fn free() -> StateRow {
        StateRow {
            locked_by: None,
            locked_at_ms: None,
            lease_left_ms: None,
            fencing_token: None,
            capacity: None,
            renewals: None,
            renewed_ago_ms: None,
            name: None,
        }
    }
}
