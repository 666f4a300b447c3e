//! Run history on the SQL stores: a release after a run records it in
//! `<table>_runs` in the release's own transaction (or statement), keeping
//! the name's last runs; `run_history` reads them back, the newest first.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use shedlock_core::{FinishedRun, LockError, RunOutcome, RunRecord};

use super::runner::execute;
use super::{Failure, LeaseParams, LeaseRow, SqlEngine, SqlLocks, answer};
use crate::dialect::{Dialect, ReleaseRun, Statements};
use crate::driver::Driver;
use crate::table::check_admin_name;

impl<D: Dialect> SqlEngine<D> {
    /// Releases `lease` as `release` does and records `run` in the same
    /// transaction: as it ended if the lease was still this holder's, as
    /// lost otherwise. True when the lease was released.
    pub(super) async fn release_after_run(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        keep_for: Duration,
        run: &FinishedRun,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        if lease.permits.is_some() {
            return self
                .release_shared(statements, lease, keep_for, Some(run), timeout)
                .await;
        }
        let params = LeaseParams {
            keep_for,
            ..LeaseParams::of_run(lease, run)
        };
        if let ReleaseRun::Combined(statement) = &statements.runs.release {
            return self.update(statement, params, timeout).await;
        }
        let mut connection = self.checkout(timeout).await?;
        // The driver's plain `BEGIN`: a release sets no isolation level.
        let mut transaction = Self::begin_with(&mut connection, None, None, timeout).await?;
        // MySQL's client counts matched rows (CLIENT_FOUND_ROWS), not changed ones.
        let released =
            execute::<D>(&mut *transaction, &statements.release, &params, timeout).await? == 1;
        record_in::<D>(&mut *transaction, statements, params, released, timeout).await?;
        answer(timeout, transaction.commit()).await?;
        Ok(released)
    }

    /// Records `run` of `lease` (whose lease already ended, or missed
    /// ticks: `finished_at` given) and trims the name's history, in one
    /// transaction.
    pub(super) async fn record_run(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        run: &FinishedRun,
        finished_at: Option<SystemTime>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let [record, trim] = &statements.runs.record;
        let params = LeaseParams::of_run(lease, run);
        let (record, params) = match finished_at {
            Some(finished_at) => {
                let tick = finished_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| {
                        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                    });
                let params = LeaseParams {
                    tick: Some(tick),
                    ..params
                };
                (&statements.runs.record_missed, params)
            }
            None => (record, params),
        };
        self.change(&[record, trim], None, params, timeout)
            .await
            .map(drop)
    }

    /// The last runs of `name`, the newest first.
    async fn read_runs(
        &self,
        statements: &Statements,
        name: &str,
        timeout: Duration,
    ) -> Result<Vec<RunRecord>, Failure> {
        let history = &statements.runs.history;
        self.fetch_rows(history, name, timeout, run_record::<D::Db>)
            .await
    }
}

/// Records the run of `params` (as lost unless `released`) and trims the
/// name's history, on `connection` (in the release's transaction).
pub(super) async fn record_in<D: Dialect>(
    connection: &mut <D::Db as sqlx::Database>::Connection,
    statements: &Statements,
    params: LeaseParams<'_, D>,
    released: bool,
    timeout: Duration,
) -> Result<(), Failure> {
    let params = if released {
        params
    } else {
        LeaseParams {
            outcome: RunOutcome::LeaseLost.as_str(),
            ..params
        }
    };
    for statement in &statements.runs.record {
        execute::<D>(&mut *connection, statement, &params, timeout).await?;
    }
    Ok(())
}

/// One row of the `history` statement.
fn run_record<DB: Driver>(row: &DB::Row) -> Result<RunRecord, sqlx::Error> {
    let since_1970 = |ms: Option<i64>| {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms.map_or(0, |ms| ms.max(0).unsigned_abs()))
    };
    let outcome = DB::text(row, 3)?
        .unwrap_or_default()
        .parse::<RunOutcome>()
        .map_err(|message| sqlx::Error::Decode(message.into()))?;
    // A `missed` entry keeps its count in the token's place: `RunRecord::new`
    // reads it back as such.
    let run = FinishedRun {
        duration: Duration::from_millis(DB::int(row, 2)?.map_or(0, |ms| ms.max(0).unsigned_abs())),
        outcome,
        fencing_token: DB::int(row, 5)?.and_then(|token| u64::try_from(token).ok()),
    };
    let locked_by = DB::text(row, 4)?.unwrap_or_default();
    Ok(RunRecord {
        // As stored, not derived from the finish and the duration.
        started_at: since_1970(DB::int(row, 0)?),
        ..RunRecord::new(&run, locked_by, since_1970(DB::int(row, 1)?))
    })
}

impl<D: Dialect> SqlLocks<D> {
    /// The last runs under `name`, the newest first.
    pub(crate) async fn run_history(&self, name: &str) -> Result<Vec<RunRecord>, LockError> {
        check_admin_name(name)?;
        let statements = &self.prepared().await?.statements;
        self.engine
            .read_runs(statements, name, self.timeout)
            .await
            .map_err(|failure| {
                self.admin_error(failure, format!("reading the run history of lock '{name}'"))
            })
    }

    /// The newest run of each of `names`, in one query (of every name's).
    pub(crate) async fn last_runs(
        &self,
        names: &[String],
    ) -> Result<Vec<Option<RunRecord>>, LockError> {
        let statements = &self.prepared().await?.statements;
        let read = |row: &<D::Db as sqlx::Database>::Row| {
            Ok((
                D::Db::text(row, 6)?.unwrap_or_default(),
                run_record::<D::Db>(row)?,
            ))
        };
        let mut newest: HashMap<String, RunRecord> = self
            .engine
            .fetch_rows(&statements.runs.last, "", self.timeout, read)
            .await
            .map_err(|failure| {
                self.admin_error(failure, "reading the locks' last runs".to_owned())
            })?
            .into_iter()
            .collect();
        Ok(names.iter().map(|name| newest.remove(name)).collect())
    }
}
