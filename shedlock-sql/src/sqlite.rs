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
use std::time::Duration;

use shedlock_core::LockError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::dialect::{Counts, Dialect, Statement, TableParam};
use crate::engine::{DEFAULT_STATEMENT_TIMEOUT, Failure, SqlLocks, parse_url};
use crate::fragments::SqlKind;
use crate::provider::{SqlDatabase, SqlLockProvider};
use crate::table::TableName;

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
pub type SqliteLockProvider = SqlLockProvider<Sqlite>;

/// SQLite, the database of [`SqliteLockProvider`]: one `INSERT .. ON
/// CONFLICT (name) DO UPDATE .. WHERE .. RETURNING` per acquisition,
/// durations as date modifiers.
#[derive(Debug)]
pub enum Sqlite {}

impl SqlDatabase for Sqlite {}

impl SqlLockProvider<Sqlite> {
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
        Self::connect_with(parse_url::<Sqlite>(url)?).await
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
                    return Err(Failure::of(err).into_error::<Sqlite>(
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
        SqlLockProvider {
            locks: SqlLocks::new(pool),
        }
    }

    /// The pool the provider uses.
    pub fn pool(&self) -> &SqlitePool {
        self.locks.pool()
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the file for now.
fn is_busy(err: &sqlx::Error) -> bool {
    let code = err
        .as_database_error()
        .and_then(|err| err.code())
        .and_then(|code| code.parse::<i32>().ok());
    // Extended result codes keep the primary code in their low byte.
    matches!(code.map(|code| code & 0xff), Some(5 | 6))
}

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    const KIND: SqlKind = SqlKind::Sqlite;

    /// A write: the transaction takes the file's write lock here.
    fn lock_row(table: &TableName, column: &str) -> String {
        format!("UPDATE {table} SET name = name WHERE name = :name RETURNING {column}")
    }

    fn columns() -> Statement<TableParam> {
        Statement::new(
            "SELECT name FROM pragma_table_info(?1, COALESCE(?2, 'main'))".to_owned(),
            [TableParam::Table, TableParam::Schema],
        )
    }

    fn counts(result: &SqliteQueryResult) -> Counts {
        Counts {
            rows_affected: result.rows_affected(),
            last_insert_id: 0,
        }
    }

    fn server(options: &SqliteConnectOptions) -> String {
        options.get_filename().display().to_string()
    }
}
