//! `PostgresLockProvider`: ShedLock's table on PostgreSQL, one `INSERT .. ON
//! CONFLICT .. DO UPDATE .. WHERE .. RETURNING` per acquisition.
//!
//! Times come from `now()` (the start of the statement, which runs alone in
//! its transaction), read in UTC (`now() AT TIME ZONE 'UTC'`): ShedLock for
//! Java stores UTC in its `TIMESTAMP` columns too.

use std::str::FromStr;
use std::time::Duration;

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::engine::{
    Engine, Failure, LeaseRow, SqlLocks, answer, checkout, connect_error, millis, taken,
    warn_if_unchecked,
};
use crate::provider::sql_provider;
use crate::table::TableName;

/// The database's clock, in UTC, as `TIMESTAMP` (without time zone).
const NOW: &str = "(now() AT TIME ZONE 'UTC')";

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
#[derive(Clone)]
pub struct PostgresLockProvider {
    locks: SqlLocks<PgEngine>,
}

impl PostgresLockProvider {
    /// Connects to `url` (`postgres://[user[:password]@]host[:port]/database`)
    /// with a small pool of its own: see [`pool_options`](Self::pool_options).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let options = PgConnectOptions::from_str(url).map_err(|err| {
            LockError::InvalidConfiguration(format!(
                "the PostgreSQL URL is not valid ({err}); expected \
                 postgres://[user[:password]@]host[:port]/database"
            ))
        })?;
        let server = describe(&options);
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(|err| connect_error("postgres", &server, err))?;
        Ok(Self::new(pool))
    }

    /// The settings of the pool [`connect`](Self::connect) makes, to build
    /// your own with them (`pool_options().connect_with(options)`):
    ///
    /// - `test_before_acquire(true)`: each connection is pinged right before
    ///   a lock operation uses it (one short round trip), so one the server
    ///   closed (`idle_session_timeout`, a restart) is replaced there,
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
    pub fn pool_options() -> PgPoolOptions {
        crate::engine::pool_options()
    }

    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep
    /// `test_before_acquire(true)` (sqlx's default): without it, a connection
    /// the server closed while idle fails the next lock operation (the
    /// provider logs a warning). See [`pool_options`](Self::pool_options)
    /// for the other settings. Nothing is sent until the first lock.
    pub fn new(pool: PgPool) -> Self {
        let server = describe(&pool.connect_options());
        warn_if_unchecked(&pool, "postgres", &server);
        PostgresLockProvider {
            locks: SqlLocks::new(PgEngine { pool }, server),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &PgPool {
        &self.locks.engine().pool
    }
}

sql_provider!(PostgresLockProvider);

/// `host:port/database`: no user name, no password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

pub(crate) struct PgEngine {
    pool: PgPool,
}

/// The statements of one table.
pub(crate) struct PgStatements {
    /// Inserts the row, or takes it over if its lease has ended, in one
    /// atomic statement; returns the token only when this call took the lock.
    /// ($1 name, $2 lock_at_most_for ms, $3 locked_by)
    acquire: String,
    /// Moves `lock_until` only while the row is still this lease's and live.
    /// ($1 name, $2 locked_by, $3 lock_at_most_for ms)
    extend: String,
    /// Shortens the lease to `lock_at_least_for` after `locked_at` (the
    /// database's clock) or `keep_for` from now, whichever is later, never
    /// lengthening it; only while the row is still this lease's and live.
    /// Truncated to the column's milliseconds: PostgreSQL would round the
    /// microseconds of `now()` up half the time, and an immediate release
    /// would keep the lock for a fraction of a millisecond.
    /// ($1 name, $2 locked_by, $3 lock_at_least_for ms, $4 keep_for ms)
    release: String,
    /// How long the current lease of a name has left, by the database's
    /// clock (ms, negative once ended), for waiters' wake-up hints. ($1 name)
    lease_left: String,
}

impl Engine for PgEngine {
    const STORE: &'static str = "postgres";
    type Connection = sqlx::pool::PoolConnection<sqlx::Postgres>;
    type Statements = PgStatements;

    fn statements(table: &TableName, fencing: bool) -> PgStatements {
        let (token_column, token_insert, token_update, returning) = if fencing {
            (
                ", fencing_token",
                ", 1",
                ", fencing_token = COALESCE(l.fencing_token, 0) + 1",
                "l.fencing_token",
            )
        } else {
            // No counter: microseconds of the database's clock.
            (
                "",
                "",
                "",
                "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            )
        };
        PgStatements {
            acquire: format!(
                "INSERT INTO {table} AS l (name, lock_until, locked_at, locked_by{token_column}) \
                 VALUES ($1, {NOW} + $2::bigint * INTERVAL '1 millisecond', {NOW}, $3{token_insert}) \
                 ON CONFLICT (name) DO UPDATE SET lock_until = EXCLUDED.lock_until, \
                 locked_at = EXCLUDED.locked_at, locked_by = EXCLUDED.locked_by{token_update} \
                 WHERE l.lock_until <= {NOW} \
                 RETURNING {returning}"
            ),
            extend: format!(
                "UPDATE {table} SET lock_until = {NOW} + $3::bigint * INTERVAL '1 millisecond' \
                 WHERE name = $1 AND locked_by = $2 AND lock_until > {NOW}"
            ),
            release: format!(
                "UPDATE {table} SET lock_until = date_trunc('milliseconds', LEAST(lock_until, GREATEST(\
                 locked_at + $3::bigint * INTERVAL '1 millisecond', \
                 {NOW} + $4::bigint * INTERVAL '1 millisecond'))) \
                 WHERE name = $1 AND locked_by = $2 AND lock_until > {NOW}"
            ),
            lease_left: format!(
                "SELECT CAST(EXTRACT(EPOCH FROM (lock_until - {NOW})) * 1000 AS BIGINT) FROM {table} WHERE name = $1"
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
            // to_regclass resolves the name as a statement would (search_path, case folding).
            let columns: Vec<String> = answer(
                timeout,
                sqlx::query_scalar(
                    "SELECT attname::text FROM pg_attribute \
                     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                )
                .bind(table.to_string())
                .fetch_all(&mut *connection),
            )
            .await?;
            Ok((!columns.is_empty()).then(|| columns.iter().any(|c| c == "fencing_token")))
        })
    }

    fn create_table<'a>(
        &'a self,
        table: &'a TableName,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let created = answer(
                timeout,
                connection.execute(
                    format!(
                        "CREATE TABLE IF NOT EXISTS {table} (\
                         name VARCHAR(64) NOT NULL, \
                         lock_until TIMESTAMP(3) NOT NULL, \
                         locked_at TIMESTAMP(3) NOT NULL, \
                         locked_by VARCHAR(255) NOT NULL, \
                         fencing_token BIGINT NOT NULL DEFAULT 0, \
                         PRIMARY KEY (name))"
                    )
                    .as_str(),
                ),
            )
            .await;
            drop(connection);
            match created {
                Ok(_) => Ok(()),
                // Two processes creating it at once: one of them loses a race
                // in the catalog, yet the table is there.
                Err(failure) => match self.has_fencing_column(table, timeout).await {
                    Ok(Some(_)) => Ok(()),
                    _ => Err(failure),
                },
            }
        })
    }

    fn checkout(&self, timeout: Duration) -> BoxFuture<'_, Result<Self::Connection, Failure>> {
        Box::pin(checkout(&self.pool, timeout))
    }

    fn acquire<'a>(
        &'a self,
        connection: &'a mut Self::Connection,
        statements: &'a PgStatements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, Failure>> {
        Box::pin(async move {
            let row = answer(
                timeout,
                sqlx::query(&statements.acquire)
                    .bind(&*lease.name)
                    .bind(millis(lock_at_most_for))
                    .bind(&lease.locked_by)
                    .fetch_optional(&mut **connection),
            )
            .await?;
            row.map_or(Ok(None), |row| taken(row.try_get::<i64, _>(0)))
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
                .map(|left| Duration::from_millis(left.max(0).unsigned_abs())))
        })
    }

    fn extend<'a>(
        &'a self,
        statements: &'a PgStatements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let done = answer(
                timeout,
                sqlx::query(&statements.extend)
                    .bind(&*lease.name)
                    .bind(&lease.locked_by)
                    .bind(millis(lock_at_most_for))
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn release<'a>(
        &'a self,
        statements: &'a PgStatements,
        lease: &'a LeaseRow,
        keep_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let mut connection = checkout(&self.pool, timeout).await?;
            let done = answer(
                timeout,
                sqlx::query(&statements.release)
                    .bind(&*lease.name)
                    .bind(&lease.locked_by)
                    .bind(millis(lease.lock_at_least_for))
                    .bind(millis(keep_for))
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
