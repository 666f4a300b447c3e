//! `SqliteLockProvider`: ShedLock's table in an SQLite file, for the
//! processes of one machine (no server).
//!
//! The file is opened in WAL mode with a busy timeout, so processes wait for
//! each other's short writes instead of failing. Acquisition is one `INSERT ..
//! ON CONFLICT (name) DO UPDATE .. WHERE .. RETURNING`. Times are SQLite's
//! clock in UTC (`strftime('%Y-%m-%d %H:%M:%f', 'now')`, fixed for the
//! duration of a statement), stored as text `YYYY-MM-DD HH:MM:SS.SSS`, which
//! sorts as it compares.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, Row};

use crate::engine::{
    DEFAULT_STATEMENT_TIMEOUT, Engine, Failure, LeaseRow, SqlLocks, answer, checkout, millis, taken,
};
use crate::provider::sql_provider;
use crate::table::TableName;

/// `strftime` format of every time in the table.
const FORMAT: &str = "'%Y-%m-%d %H:%M:%f'";

/// How long a statement waits for another process's write to the file.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Locks in an SQLite database file, shared by the processes of one machine.
///
/// ```no_run
/// use shedlock_sql::SqliteLockProvider;
///
/// # async fn run() -> Result<(), shedlock_core::LockError> {
/// let provider = SqliteLockProvider::open("/var/lib/my-service/locks.db").await?;
/// provider.create_table_if_missing().await?;
/// # Ok(()) }
/// ```
///
/// Use a local file system: SQLite's locking is not reliable on network file
/// systems, and WAL mode needs shared memory between the processes.
#[derive(Clone)]
pub struct SqliteLockProvider {
    locks: SqlLocks<SqliteEngine>,
}

impl SqliteLockProvider {
    /// Opens (creating it if missing) the database file at `path`, in WAL
    /// mode with a [`DEFAULT_BUSY_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the file cannot be opened or created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, LockError> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::connect_with(options).await
    }

    /// Opens the database of an `sqlite://path` URL (creating the file if
    /// missing), in WAL mode with a [`DEFAULT_BUSY_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the file cannot be opened or created.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let options = SqliteConnectOptions::from_str(url).map_err(|err| {
            LockError::InvalidConfiguration(format!(
                "the SQLite URL is not valid ({err}); expected sqlite://path/to/file.db"
            ))
        })?;
        Self::connect_with(options).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<Self, LockError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(DEFAULT_BUSY_TIMEOUT);
        let file = options.get_filename().display().to_string();
        // Processes opening a new file at once race to switch it to WAL, which
        // SQLite answers with "database is locked" without waiting: retry.
        let started = std::time::Instant::now();
        let pool = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(DEFAULT_STATEMENT_TIMEOUT)
                .connect_with(options.clone())
                .await;
            match opened {
                Ok(pool) => break pool,
                Err(err) if is_busy(&err) && started.elapsed() < DEFAULT_BUSY_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => {
                    return Err(Failure::of(err).into_error(
                        "sqlite",
                        &file,
                        "opening the database",
                        "check that its directory exists and is writable by this process",
                    ));
                }
            }
        };
        Ok(Self::new(pool))
    }

    /// Uses `pool`, a pool you built. For several processes, open it in WAL
    /// mode with a busy timeout, as [`open`](Self::open) does. Nothing is sent
    /// until the first lock.
    pub fn new(pool: SqlitePool) -> Self {
        let file = pool.connect_options().get_filename().display().to_string();
        SqliteLockProvider {
            locks: SqlLocks::new(SqliteEngine { pool }, file),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.locks.engine().pool
    }
}

sql_provider!(SqliteLockProvider);

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the file for now.
fn is_busy(err: &sqlx::Error) -> bool {
    let code = err
        .as_database_error()
        .and_then(|err| err.code())
        .and_then(|code| code.parse::<i32>().ok());
    // Extended result codes keep the primary code in their low byte.
    matches!(code.map(|code| code & 0xff), Some(5 | 6))
}

pub(crate) struct SqliteEngine {
    pool: SqlitePool,
}

/// The statements of one table.
pub(crate) struct SqliteStatements {
    /// Inserts the row, or takes it over if its lease has ended, in one
    /// atomic statement; returns the token only when this call took the lock.
    /// (?1 name, ?2 lock_at_most_for modifier, ?3 locked_by)
    acquire: String,
    /// Moves `lock_until` only while the row is still this lease's and live.
    /// (?1 name, ?2 locked_by, ?3 lock_at_most_for modifier)
    extend: String,
    /// Shortens the lease to `lock_at_least_for` after `locked_at` (the
    /// database's clock) or `keep_for` from now, whichever is later, never
    /// lengthening it; only while the row is still this lease's and live.
    /// (?1 name, ?2 locked_by, ?3 lock_at_least_for modifier, ?4 keep_for modifier)
    release: String,
    /// How long the current lease of a name has left, by the database's
    /// clock (ms, negative once ended), for waiters' wake-up hints. (?1 name)
    lease_left: String,
}

/// A duration as an SQLite date modifier: `+12.345 seconds`.
fn modifier(duration: Duration) -> String {
    let ms = millis(duration);
    format!("+{}.{:03} seconds", ms / 1000, ms % 1000)
}

impl Engine for SqliteEngine {
    const STORE: &'static str = "sqlite";
    type Connection = sqlx::pool::PoolConnection<sqlx::Sqlite>;
    type Statements = SqliteStatements;

    fn statements(table: &TableName, fencing: bool) -> SqliteStatements {
        let now = format!("strftime({FORMAT}, 'now')");
        let (token_column, token_insert, token_update, returning) = if fencing {
            (
                ", fencing_token",
                ", 1",
                ", fencing_token = COALESCE(fencing_token, 0) + 1",
                "fencing_token",
            )
        } else {
            // No counter: the database's clock (milliseconds) in microseconds.
            (
                "",
                "",
                "",
                "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000",
            )
        };
        SqliteStatements {
            acquire: format!(
                "INSERT INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                 VALUES (?1, strftime({FORMAT}, 'now', ?2), {now}, ?3{token_insert}) \
                 ON CONFLICT (name) DO UPDATE SET lock_until = excluded.lock_until, \
                 locked_at = excluded.locked_at, locked_by = excluded.locked_by{token_update} \
                 WHERE lock_until <= {now} \
                 RETURNING {returning}"
            ),
            extend: format!(
                "UPDATE {table} SET lock_until = strftime({FORMAT}, 'now', ?3) \
                 WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}"
            ),
            release: format!(
                "UPDATE {table} SET lock_until = MIN(lock_until, MAX(\
                 strftime({FORMAT}, locked_at, ?3), strftime({FORMAT}, 'now', ?4))) \
                 WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}"
            ),
            lease_left: format!(
                "SELECT CAST(ROUND((julianday(lock_until) - julianday('now')) * 86400000.0) AS INTEGER) \
                 FROM {table} WHERE name = ?1"
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
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?1, ?2)")
                    .bind(table.table())
                    .bind(table.schema().unwrap_or("main"))
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
                         name VARCHAR(64) NOT NULL PRIMARY KEY, \
                         lock_until TIMESTAMP(3) NOT NULL, \
                         locked_at TIMESTAMP(3) NOT NULL, \
                         locked_by VARCHAR(255) NOT NULL, \
                         fencing_token BIGINT NOT NULL DEFAULT 0)"
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
        statements: &'a SqliteStatements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, Failure>> {
        Box::pin(async move {
            let row = answer(
                timeout,
                sqlx::query(&statements.acquire)
                    .bind(&*lease.name)
                    .bind(modifier(lock_at_most_for))
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
        statements: &'a SqliteStatements,
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
                    .bind(modifier(lock_at_most_for))
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn release<'a>(
        &'a self,
        statements: &'a SqliteStatements,
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
                    .bind(modifier(lease.lock_at_least_for))
                    .bind(modifier(keep_for))
                    .execute(&mut *connection),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_date_modifiers_in_whole_milliseconds() {
        assert_eq!(modifier(Duration::from_millis(1500)), "+1.500 seconds");
        assert_eq!(modifier(Duration::from_micros(1)), "+0.001 seconds");
        assert_eq!(modifier(Duration::ZERO), "+0.000 seconds");
        assert_eq!(modifier(Duration::from_secs(3600)), "+3600.000 seconds");
    }
}
