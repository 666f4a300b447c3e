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
//! Times come from `UTC_TIMESTAMP(3)`, evaluated once per statement.

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult};

use crate::dialect::{
    Acquire, Counts, Dialect, DurationEncoding, LeaseParam, Statement, Statements, TableParam,
    Token, host_port_database,
};
use crate::engine::SqlLocks;
use crate::provider::{server_provider, sql_provider};
use crate::table::TableName;

const NOW: &str = "UTC_TIMESTAMP(3)";

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
#[derive(Clone)]
pub struct MySqlLockProvider {
    locks: SqlLocks<MySqlDialect>,
}

impl MySqlLockProvider {
    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep its
    /// sessions' time zone at `+00:00` and `test_before_acquire(true)`
    /// (sqlx's defaults): without the latter, a connection the server closed
    /// while idle fails the next lock operation (the provider logs a
    /// warning). See [`pool_options`](Self::pool_options) for the other
    /// settings. Nothing is sent until the first lock.
    pub fn new(pool: MySqlPool) -> Self {
        MySqlLockProvider {
            locks: SqlLocks::new(pool),
        }
    }
}

sql_provider!(MySqlLockProvider, MySqlPool);
server_provider!(
    MySqlLockProvider,
    MySqlDialect,
    MySqlPoolOptions,
    url = "mysql://[user[:password]@]host[:port]/database",
    idle_limit = "wait_timeout",
    #[doc = "Its sessions use the time zone `+00:00` (sqlx's default), so"]
    #[doc = "`TIMESTAMP` columns hold UTC as written."]
);

/// MySQL's statements: an `UPDATE` of an ended lease, then an `INSERT
/// IGNORE` of a new row when it matched none; durations in microseconds.
pub(crate) struct MySqlDialect;

/// Without the fencing column: microseconds of the database's clock.
const CLOCK_TOKEN: &str =
    "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) AS SIGNED)";

impl Dialect for MySqlDialect {
    type Db = sqlx::MySql;
    const STORE: &'static str = "mysql";
    const TITLE: &'static str = "MySQL/MariaDB";
    const URL_SHAPE: &'static str = "mysql://[user[:password]@]host[:port]/database";
    const SERVER: bool = true;
    const DURATIONS: DurationEncoding = DurationEncoding::Micros;

    fn statements(table: &TableName, fencing: bool) -> Statements {
        use LeaseParam::{KeepFor, LockAtLeastFor, LockAtMostFor, LockedBy, Name};
        let (token_update, token_column, token_insert) = if fencing {
            (
                ", fencing_token = LAST_INSERT_ID(COALESCE(fencing_token, 0) + 1)",
                ", fencing_token",
                ", 1",
            )
        } else {
            ("", "", "")
        };
        let (taken_over, inserted) = if fencing {
            (Token::LastInsertId, Token::First)
        } else {
            (Token::Clock(CLOCK_TOKEN), Token::Clock(CLOCK_TOKEN))
        };
        Statements {
            acquire: vec![
                // Takes over the row if its lease has ended; matches one row
                // only then. With the fencing column, `LAST_INSERT_ID(expr)`
                // hands the new token back in the same answer.
                Acquire::Counting(
                    Statement::new(
                        format!(
                            "UPDATE {table} SET lock_until = {NOW} + INTERVAL ? MICROSECOND, \
                             locked_at = {NOW}, locked_by = ?{token_update} \
                             WHERE name = ? AND lock_until <= {NOW}"
                        ),
                        &[LockAtMostFor, LockedBy, Name],
                    ),
                    taken_over,
                ),
                // Inserts the row when there is none; one row inserted only
                // then, and that first token is 1.
                Acquire::Counting(
                    Statement::new(
                        format!(
                            "INSERT IGNORE INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                             VALUES (?, {NOW} + INTERVAL ? MICROSECOND, {NOW}, ?{token_insert})"
                        ),
                        &[Name, LockAtMostFor, LockedBy],
                    ),
                    inserted,
                ),
            ],
            extend: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = {NOW} + INTERVAL ? MICROSECOND \
                     WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
                ),
                &[LockAtMostFor, Name, LockedBy],
            ),
            release: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = LEAST(lock_until, GREATEST(\
                     locked_at + INTERVAL ? MICROSECOND, {NOW} + INTERVAL ? MICROSECOND)) \
                     WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
                ),
                &[LockAtLeastFor, KeepFor, Name, LockedBy],
            ),
            lease_left: Statement::new(
                format!(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, {NOW}, lock_until) FROM {table} WHERE name = ?"
                ),
                &[Name],
            ),
        }
    }

    fn columns() -> Statement<TableParam> {
        Statement::new(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?"
                .to_owned(),
            &[TableParam::Schema, TableParam::Table],
        )
    }

    fn create_table(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             name VARCHAR(64) NOT NULL, \
             lock_until TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             locked_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             locked_by VARCHAR(255) NOT NULL, \
             fencing_token BIGINT NOT NULL DEFAULT 0, \
             PRIMARY KEY (name))"
        )
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
