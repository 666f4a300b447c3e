//! `MySqlLockProvider`: ShedLock's table on MySQL or MariaDB.
//!
//! Acquisition is an `UPDATE .. WHERE lock_until <= UTC_TIMESTAMP(3)` and, when
//! it matched no row, an `INSERT IGNORE` of a new row: the rows each statement
//! changed tell whether this call took the lock. (A single `INSERT .. ON
//! DUPLICATE KEY UPDATE` cannot tell "inserted" from "found held" through
//! the affected-rows count the client reports.) Both statements are atomic
//! on their own; in steady state (the row exists) a free lock takes one
//! round trip and a held one two.
//!
//! Times come from `UTC_TIMESTAMP(3)`, evaluated once per statement, except
//! where a statement takes or extends a lease: there the clock is read when
//! the row is changed, after any wait for its row lock (`SYSDATE`, which a
//! server started with `--sysdate-is-now` would break).

use std::borrow::Cow;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult};

use crate::dialect::{Acquire, Counts, Dialect, Statement, TableParam, Token, host_port_database};
use crate::engine::SqlLocks;
use crate::fragments::SqlKind;
use crate::provider::{SqlDatabase, SqlLockProvider, SqlServer};
use crate::statements::Tables;
use crate::template::compile;

/// MySQL and MariaDB, the databases of [`MySqlLockProvider`]: an `UPDATE`
/// of an ended lease, then an `INSERT IGNORE` of a new row when it matched
/// none; durations in microseconds.
#[derive(Debug)]
pub enum MySql {}

/// Locks in a MySQL or MariaDB table (ShedLock's `shedlock` by default).
///
/// ```no_run
/// use shedlock_sql::MySqlLockProvider;
///
/// # async fn run() -> Result<(), shedlock_core::LockError> {
/// let provider = MySqlLockProvider::connect("mysql://app@db.internal/app").await?;
/// provider.create_table_if_missing().await?;
/// # Ok(()) }
/// ```
///
/// With the usual case-insensitive collations, lock names that differ only
/// in case (or trailing spaces) are the same lock.
///
/// Credentials in the URL are used to connect and never appear in errors,
/// logs or `Debug` output.
pub type MySqlLockProvider = SqlLockProvider<MySql>;

impl SqlDatabase for MySql {}
impl SqlServer for MySql {}

impl SqlLockProvider<MySql> {
    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep its
    /// sessions' time zone at `+00:00` and `test_before_acquire(true)`
    /// (sqlx's defaults): without the latter, a connection the server closed
    /// while idle fails the next lock operation (the provider logs a
    /// warning). See [`connect`](Self::connect) for the other settings.
    /// Nothing is sent until the first lock.
    pub fn new(pool: MySqlPool) -> Self {
        SqlLockProvider {
            locks: SqlLocks::new(pool),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &MySqlPool {
        self.locks.pool()
    }

    /// The settings of the pool [`connect`](Self::connect) makes (its docs
    /// list them), to build your own with them.
    pub fn pool_options() -> MySqlPoolOptions {
        crate::engine::pool_options()
    }
}

/// How many rows one prune statement deletes at most: MySQL 8 cannot be
/// told to cancel a statement the caller gave up on (see
/// `bounded_statement`), so each is kept short (0.02 to 0.35 s pruning
/// 300,000 names on the test machine's MariaDB, see BENCHMARKS.md) and
/// sent again until it deletes fewer, in one transaction.
const PRUNE_BATCH: u64 = 10_000;

impl Dialect for MySql {
    type Db = sqlx::MySql;
    const KIND: SqlKind = SqlKind::MySql;

    const PRUNE_BATCH: Option<u64> = Some(PRUNE_BATCH);

    /// An `UPDATE` of an ended lease, then an `INSERT IGNORE` of a new row
    /// when it matched none; each changes one row only when it took the
    /// lock. With the fencing column, `LAST_INSERT_ID(expr)` hands the new
    /// token back in the same answer.
    fn acquire(tables: &Tables) -> Vec<Acquire> {
        let Tables {
            table, settings, ..
        } = tables;
        let token = if tables.fencing {
            Token::LastInsertId
        } else {
            Token::Clock
        };
        let capacity = format!(
            "COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = :name), :capacity) <> 0"
        );
        let (now, after_wait) = (Self::KIND.now(), Self::KIND.after_wait());
        let last_insert_id = |next: String| format!("LAST_INSERT_ID({next})");
        let token_insert = if tables.fencing {
            format!(", LAST_INSERT_ID({})", Self::KIND.clock_micros())
        } else {
            String::new()
        };
        vec![
            // Takes over the row if its lease has ended and the lock is not paused.
            Acquire::Counting(
                compile::<Self>(&format!(
                    "UPDATE {table} SET lock_until = {end}, \
                     locked_at = {after_wait}, locked_by = :locked_by{token_update} \
                     WHERE name = :name AND lock_until <= {after_wait} AND {capacity}",
                    end = Self::KIND.lease_end(":lock_at_most_for"),
                    token_update = tables.token_update::<Self>("fencing_token", last_insert_id),
                )),
                token,
            ),
            // Inserts the row when there is none and the lock is not paused.
            Acquire::Counting(
                compile::<Self>(&format!(
                    "INSERT IGNORE INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                     SELECT :name, {end}, {now}, :locked_by{token_insert} FROM DUAL \
                     WHERE {capacity}",
                    end = Self::KIND.plus(now, ":lock_at_most_for"),
                    token_column = tables.token_column(),
                )),
                token,
            ),
        ]
    }

    fn columns() -> Statement<TableParam> {
        Statement::new(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?"
                .to_owned(),
            [TableParam::Schema, TableParam::Table],
        )
    }

    /// `READ COMMITTED`: no gap locks, each statement reads what is committed.
    const KINDS_ISOLATION: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");

    /// MariaDB cancels the statement itself past the timeout, its waits for
    /// row locks included (`SET STATEMENT max_statement_time`, in a comment
    /// only MariaDB executes). MySQL 8 has no such bound for writes
    /// (`max_execution_time` is for `SELECT`s): there a statement the
    /// caller gave up on runs to its end, which batches keep short, or
    /// waits for a row lock up to `innodb_lock_wait_timeout`.
    fn bounded_statement(sql: &str, timeout: std::time::Duration) -> Cow<'_, str> {
        let ms = crate::dialect::millis(timeout).max(1);
        Cow::Owned(format!(
            "/*M!100108 SET STATEMENT max_statement_time={}.{:03} FOR */ {sql}",
            ms / 1000,
            ms % 1000
        ))
    }

    fn counts(result: &MySqlQueryResult) -> Counts {
        Counts {
            // Matched rows, not changed ones: the client asks for CLIENT_FOUND_ROWS.
            rows_affected: result.rows_affected(),
            last_insert_id: result.last_insert_id(),
        }
    }

    fn server(options: &MySqlConnectOptions) -> String {
        host_port_database(
            options.get_host(),
            options.get_port(),
            options.get_database(),
        )
    }
}
