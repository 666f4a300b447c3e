//! `PostgresLockProvider`: ShedLock's table on PostgreSQL, one `INSERT .. ON
//! CONFLICT .. DO UPDATE .. WHERE .. RETURNING` per acquisition.
//!
//! A release announces the lock's name on the table's channel
//! (`pg_notify`, in the release statement); waiters of other processes
//! listening there wake at once (see `pg_releases.rs`).
//!
//! Times come from `now()` (the start of the statement, which runs alone in
//! its transaction), read in UTC (`now() AT TIME ZONE 'UTC'`): ShedLock for
//! Java stores UTC in its `TIMESTAMP` columns too.

use std::sync::Arc;

use shedlock_core::{RUN_HISTORY_LEN, ReleaseNotifiers};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};

use crate::dialect::{Counts, Dialect, ReleaseRun, Statement, TableParam, host_port_database};
use crate::engine::SqlLocks;
use crate::fragments::SqlKind;
use crate::pg_releases::{PgReleaseFeed, channel_of};
use crate::provider::{SqlDatabase, SqlLockProvider, SqlServer};
use crate::releases::ReleaseFeed;
use crate::statements::{Tables, release_update, run_values, trim_runs};
use crate::table::TableName;
use crate::template::compile;

/// PostgreSQL, the database of [`PostgresLockProvider`]: one `INSERT ..
/// ON CONFLICT .. DO UPDATE .. WHERE .. RETURNING` per acquisition,
/// durations in milliseconds.
#[derive(Debug)]
pub enum Postgres {}

/// Locks in a PostgreSQL table (ShedLock's `shedlock` by default).
///
/// ```no_run
/// use shedlock_sql::PostgresLockProvider;
///
/// # async fn run() -> Result<(), shedlock_core::LockError> {
/// let provider = PostgresLockProvider::connect("postgres://app@db.internal/app").await?;
/// provider.create_table_if_missing().await?;
/// # Ok(()) }
/// ```
///
/// Credentials in the URL are used to connect and never appear in errors,
/// logs or `Debug` output.
pub type PostgresLockProvider = SqlLockProvider<Postgres>;

impl SqlDatabase for Postgres {}
impl SqlServer for Postgres {}

impl SqlLockProvider<Postgres> {
    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep
    /// `test_before_acquire(true)` (sqlx's default): without it, a connection
    /// the server closed while idle fails the next lock operation (the
    /// provider logs a warning). See [`connect`](Self::connect) for the
    /// other settings. Nothing is sent until the first lock.
    pub fn new(pool: PgPool) -> Self {
        SqlLockProvider {
            locks: SqlLocks::new(pool),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &PgPool {
        self.locks.pool()
    }

    /// The settings of the pool [`connect`](Self::connect) makes (its docs
    /// list them), to build your own with them.
    pub fn pool_options() -> PgPoolOptions {
        crate::engine::pool_options()
    }
}

impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    const KIND: SqlKind = SqlKind::Postgres;

    /// The name is announced on the table's channel (letters, digits and
    /// `_.:#` only: safe in the literal) in the same statement, so waiters
    /// in other processes hear it once it is committed (a lease kept for
    /// `lock_at_least_for` too: their next attempt reads its new end). One
    /// row of answer: one row changed.
    fn announced(tables: &Tables, update: &str) -> String {
        format!(
            "WITH released AS ({update} RETURNING name) \
             SELECT pg_notify('{channel}', name) FROM released",
            channel = channel_of(&tables.table),
        )
    }

    /// One statement: the release, its run (lease_lost when the release
    /// matched nothing) and the trim, which does not see the new row (one
    /// snapshot), so it keeps one run fewer.
    fn release_with_run(tables: &Tables) -> ReleaseRun {
        ReleaseRun::Combined(compile::<Self>(&format!(
            "WITH released AS ({release} RETURNING name), \
             recorded AS (INSERT INTO {runs} \
             (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
             SELECT {values}, CASE WHEN EXISTS (SELECT 1 FROM released) \
             THEN :outcome::varchar ELSE 'lease_lost' END, :holder, :run_token::bigint), \
             trimmed AS ({trim}) \
             SELECT pg_notify('{channel}', name) FROM released",
            release = release_update::<Self>(tables),
            runs = tables.runs,
            values = run_values::<Self>(Self::KIND.now()),
            trim = trim_runs(&tables.runs, RUN_HISTORY_LEN - 1),
            channel = channel_of(&tables.table),
        )))
    }

    fn notify(tables: &Tables) -> Option<String> {
        Some(format!(
            "SELECT pg_notify('{}', :name)",
            channel_of(&tables.table)
        ))
    }

    fn columns() -> Statement<TableParam> {
        // to_regclass resolves the name as a statement would (search_path, case folding).
        Statement::new(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped"
                .to_owned(),
            [TableParam::Qualified],
        )
    }

    /// Waits for a row lock and idles inside the transaction for at most
    /// the statement timeout each: past it, PostgreSQL ends the wait, or
    /// the stalled session and its locks.
    fn kinds_begin(timeout: std::time::Duration) -> Option<String> {
        let ms = crate::dialect::millis(timeout).max(1);
        Some(format!(
            "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL idle_in_transaction_session_timeout = {ms}"
        ))
    }

    /// Every statement, its waits for row locks and the idle time inside
    /// the transaction bounded to the timeout: past it, PostgreSQL cancels
    /// the statement (and so the transaction) itself.
    fn bounded_begin(timeout: std::time::Duration) -> Option<String> {
        let ms = crate::dialect::millis(timeout).max(1);
        Some(format!(
            "BEGIN; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {ms}"
        ))
    }

    /// The catalog keeps the case the column was created with.
    fn is_fencing_column(column: &str) -> bool {
        column == "fencing_token"
    }

    fn counts(result: &PgQueryResult) -> Counts {
        Counts {
            rows_affected: result.rows_affected(),
            last_insert_id: 0,
        }
    }

    fn server(options: &PgConnectOptions) -> String {
        host_port_database(
            options.get_host(),
            options.get_port(),
            options.get_database(),
        )
    }

    /// `LISTEN` on the table's channel, on a connection of its own.
    fn release_feed(
        pool: &PgPool,
        table: &TableName,
        notifiers: &Arc<ReleaseNotifiers>,
    ) -> Option<Arc<dyn ReleaseFeed>> {
        Some(Arc::new(PgReleaseFeed::new(pool, table, notifiers)))
    }
}
