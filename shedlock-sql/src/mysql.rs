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

use std::str::FromStr;
use std::time::Duration;

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch,
};
use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::engine::{
    Engine, Failure, LeaseRow, SqlLocks, answer, checkout, connect_error, millis, taken,
    warn_if_unchecked,
};
use crate::provider::sql_provider;
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
    locks: SqlLocks<MySqlEngine>,
}

impl MySqlLockProvider {
    /// Connects to `url` (`mysql://[user[:password]@]host[:port]/database`)
    /// with a small pool of its own (see [`pool_options`](Self::pool_options)).
    /// Its sessions use the time zone `+00:00` (sqlx's default), so
    /// `TIMESTAMP` columns hold UTC as written.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let options = MySqlConnectOptions::from_str(url).map_err(|err| {
            LockError::InvalidConfiguration(format!(
                "the MySQL URL is not valid ({err}); expected \
                 mysql://[user[:password]@]host[:port]/database"
            ))
        })?;
        let server = describe(&options);
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(|err| connect_error("mysql", &server, err))?;
        Ok(Self::new(pool))
    }

    /// The settings of the pool [`connect`](Self::connect) makes, to build
    /// your own with them (`pool_options().connect_with(options)`):
    ///
    /// - `test_before_acquire(true)`: each connection is pinged right before
    ///   a lock operation uses it (one short round trip), so one the server
    ///   closed (`wait_timeout`, a restart) is replaced there,
    ///   before a lock statement is sent on it;
    /// - `idle_timeout(60 s)`: idle connections are closed after 60-120 s,
    ///   before the server's idle limit or a NAT or load balancer (often
    ///   4-6 minutes) drops them without a word, which a ping could only
    ///   detect by timing out;
    /// - `max_lifetime(10 min)`: connections are renewed, so one to a server
    ///   that should no longer be used (a previous primary behind a moved DNS
    ///   name) is left within minutes;
    /// - `acquire_timeout(2 s)`: while the server is down or restarting, a
    ///   lock operation fails after 2 s with a [`LockError::Store`] saying
    ///   so, instead of hanging; the next operation connects again, so
    ///   locking resumes by itself once the server is back;
    /// - `max_connections(4)`: lock operations are short.
    pub fn pool_options() -> MySqlPoolOptions {
        crate::engine::pool_options()
    }

    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep its
    /// sessions' time zone at `+00:00` and `test_before_acquire(true)`
    /// (sqlx's defaults): without the latter, a connection the server closed
    /// while idle fails the next lock operation (the provider logs a
    /// warning). See [`pool_options`](Self::pool_options) for the other
    /// settings. Nothing is sent until the first lock.
    pub fn new(pool: MySqlPool) -> Self {
        let server = describe(&pool.connect_options());
        warn_if_unchecked(&pool, "mysql", &server);
        MySqlLockProvider {
            locks: SqlLocks::new(MySqlEngine { pool }, server),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.locks.engine().pool
    }
}

sql_provider!(MySqlLockProvider);

/// `host:port/database`: no user name, no password.
fn describe(options: &MySqlConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

pub(crate) struct MySqlEngine {
    pool: MySqlPool,
}

/// The statements of one table.
pub(crate) struct MySqlStatements {
    fencing: bool,
    /// Takes over the row if its lease has ended; matches one row only then.
    /// With the fencing column, `LAST_INSERT_ID(expr)` hands the new token
    /// back in the same answer. (lock_at_most_for µs, locked_by, name)
    take_over: String,
    /// Inserts the row when there is none; one row inserted only then, and
    /// that first token is 1. (name, lock_at_most_for µs, locked_by)
    insert: String,
    /// Moves `lock_until` only while the row is still this lease's and live.
    /// (lock_at_most_for µs, name, locked_by)
    extend: String,
    /// Shortens the lease to `lock_at_least_for` after `locked_at` (the
    /// database's clock) or `keep_for` from now, whichever is later, never
    /// lengthening it; only while the row is still this lease's and live.
    /// (lock_at_least_for µs, keep_for µs, name, locked_by)
    release: String,
    /// How long the current lease of a name has left, by the database's
    /// clock (µs, negative once ended), for waiters' wake-up hints. (? name)
    lease_left: String,
}

/// Without the fencing column: microseconds of the database's clock.
const CLOCK_TOKEN: &str =
    "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) AS SIGNED)";

fn micros(duration: Duration) -> i64 {
    millis(duration).saturating_mul(1000)
}

impl Engine for MySqlEngine {
    const STORE: &'static str = "mysql";
    type Connection = sqlx::pool::PoolConnection<sqlx::MySql>;
    type Statements = MySqlStatements;

    fn statements(table: &TableName, fencing: bool) -> MySqlStatements {
        let (token_update, token_column, token_insert) = if fencing {
            (
                ", fencing_token = LAST_INSERT_ID(COALESCE(fencing_token, 0) + 1)",
                ", fencing_token",
                ", 1",
            )
        } else {
            ("", "", "")
        };
        MySqlStatements {
            fencing,
            take_over: format!(
                "UPDATE {table} SET lock_until = {NOW} + INTERVAL ? MICROSECOND, \
                 locked_at = {NOW}, locked_by = ?{token_update} \
                 WHERE name = ? AND lock_until <= {NOW}"
            ),
            insert: format!(
                "INSERT IGNORE INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                 VALUES (?, {NOW} + INTERVAL ? MICROSECOND, {NOW}, ?{token_insert})"
            ),
            extend: format!(
                "UPDATE {table} SET lock_until = {NOW} + INTERVAL ? MICROSECOND \
                 WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
            ),
            release: format!(
                "UPDATE {table} SET lock_until = LEAST(lock_until, GREATEST(\
                 locked_at + INTERVAL ? MICROSECOND, {NOW} + INTERVAL ? MICROSECOND)) \
                 WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
            ),
            lease_left: format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, {NOW}, lock_until) FROM {table} WHERE name = ?"
            ),
        }
    }

    fn has_fencing_column<'a>(
        &'a self,
        table: &'a TableName,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let columns: Vec<String> = answer(
                timeout,
                sqlx::query_scalar(
                    "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                     WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
                )
                .bind(table.schema())
                .bind(table.table())
                .fetch_all(&mut *connection),
            )
            .await?;
            Ok((!columns.is_empty()).then(|| {
                columns
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("fencing_token"))
            }))
        })
    }

    fn create_table<'a>(
        &'a self,
        table: &'a TableName,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            answer(
                timeout,
                connection.execute(
                    format!(
                        "CREATE TABLE IF NOT EXISTS {table} (\
                         name VARCHAR(64) NOT NULL, \
                         lock_until TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
                         locked_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
                         locked_by VARCHAR(255) NOT NULL, \
                         fencing_token BIGINT NOT NULL DEFAULT 0, \
                         PRIMARY KEY (name))"
                    )
                    .as_str(),
                ),
            )
            .await?;
            Ok(())
        })
    }

    fn checkout(&self, timeout: Duration) -> BoxFuture<'_, Result<Self::Connection, Failure>> {
        Box::pin(checkout(&self.pool, timeout))
    }

    fn acquire<'a>(
        &'a self,
        connection: &'a mut Self::Connection,
        statements: &'a MySqlStatements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, Failure>> {
        Box::pin(async move {
            let took_over = answer(
                timeout,
                sqlx::query(&statements.take_over)
                    .bind(micros(lock_at_most_for))
                    .bind(&lease.locked_by)
                    .bind(&*lease.name)
                    .execute(&mut **connection),
            )
            .await?;
            let token = if took_over.rows_affected() == 1 {
                if statements.fencing {
                    // Set by LAST_INSERT_ID(expr) in the statement.
                    i64::try_from(took_over.last_insert_id()).unwrap_or(i64::MAX)
                } else {
                    0
                }
            } else {
                let inserted = answer(
                    timeout,
                    sqlx::query(&statements.insert)
                        .bind(&*lease.name)
                        .bind(micros(lock_at_most_for))
                        .bind(&lease.locked_by)
                        .execute(&mut **connection),
                )
                .await?;
                if inserted.rows_affected() != 1 {
                    return Ok(None);
                }
                1
            };
            if statements.fencing {
                return taken(Ok(token));
            }
            // Read after the acquisition: later than it, earlier than any next one.
            let clock = sqlx::query_scalar::<_, i64>(CLOCK_TOKEN).fetch_one(&mut **connection);
            match answer(timeout, clock).await {
                Ok(token) => taken(Ok(token)),
                // The lock is taken: a lost token must release it.
                Err(failure) => Err(Failure {
                    unanswered: true,
                    ..failure
                }),
            }
        })
    }

    fn lease_left<'a>(
        &'a self,
        statements: &'a Self::Statements,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Duration>, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let left: Option<Option<i64>> = answer(
                timeout,
                sqlx::query_scalar(&statements.lease_left)
                    .bind(name)
                    .fetch_optional(&mut *connection),
            )
            .await?;
            Ok(left
                .flatten()
                .map(|left| Duration::from_micros(left.max(0).unsigned_abs())))
        })
    }

    fn extend<'a>(
        &'a self,
        statements: &'a MySqlStatements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            // The client counts matched rows (CLIENT_FOUND_ROWS), not changed ones.
            let done = answer(
                timeout,
                sqlx::query(&statements.extend)
                    .bind(micros(lock_at_most_for))
                    .bind(&*lease.name)
                    .bind(&lease.locked_by)
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn release<'a>(
        &'a self,
        statements: &'a MySqlStatements,
        lease: &'a LeaseRow,
        keep_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let done = answer(
                timeout,
                sqlx::query(&statements.release)
                    .bind(micros(lease.lock_at_least_for))
                    .bind(micros(keep_for))
                    .bind(&*lease.name)
                    .bind(&lease.locked_by)
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
