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

use crate::dialect::{Acquire, Counts, Dialect, DurationEncoding, Statement, TableParam};
use crate::engine::{DEFAULT_STATEMENT_TIMEOUT, Failure, SqlLocks, parse_url};
use crate::provider::{SqlDatabase, SqlLockProvider};
use crate::schema::ColumnType;
use crate::statements::Tables;
use crate::table::TableName;
use crate::template::compile;

/// `strftime` format of every time in the table.
const FORMAT: &str = "'%Y-%m-%d %H:%M:%f'";

/// The database's clock, in UTC, in the columns' format.
const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

/// `time` as the input of a date function: `'now'` for [`NOW`] (the same
/// instant throughout a statement), the expression itself otherwise.
fn julian_input(time: &str) -> &str {
    if time == NOW { "'now'" } else { time }
}

/// The database's clock (milliseconds) in microseconds since 1970.
const CLOCK_MICROS: &str =
    "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000";

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
    const PROVIDER: &'static str = "SqliteLockProvider";
    const STORE: &'static str = "sqlite";
    const TITLE: &'static str = "SQLite";
    const URL_SHAPE: &'static str = "sqlite://path/to/file.db";
    const SERVER: bool = false;
    const DURATIONS: DurationEncoding = DurationEncoding::DateModifier;

    const NUMBERED_PLACEHOLDERS: bool = true;
    const NOW: &'static str = NOW;
    const AFTER_WAIT_LIVE: &'static str = NOW;
    const CLOCK_MICROS: &'static str = CLOCK_MICROS;

    fn placeholder(index: usize) -> String {
        format!("?{index}")
    }

    /// One write at a time holds the file: no statement waits for a row.
    fn lease_end(duration: &str) -> String {
        Self::plus(NOW, duration)
    }

    /// `duration` is a date modifier (`+12.345 seconds`).
    fn plus(time: &str, duration: &str) -> String {
        format!("strftime({FORMAT}, {}, {duration})", julian_input(time))
    }

    fn minus_millis(time: &str, millis: &str) -> String {
        format!(
            "strftime({FORMAT}, julianday({}) - {millis} / 86400000.0)",
            julian_input(time)
        )
    }

    fn ms_between(from: &str, to: &str) -> String {
        format!(
            "CAST(ROUND((julianday({}) - julianday({})) * 86400000.0) AS INTEGER)",
            julian_input(to),
            julian_input(from)
        )
    }

    fn millis_since_1970(column: &str) -> String {
        format!("CAST(ROUND((julianday({column}) - 2440587.5) * 86400000.0) AS INTEGER)")
    }

    fn int(expr: &str) -> String {
        expr.to_owned()
    }

    fn greatest(a: &str, b: &str) -> String {
        format!("MAX({a}, {b})")
    }

    fn least(a: &str, b: &str) -> String {
        format!("MIN({a}, {b})")
    }

    /// Inserts the row, or takes it over if its lease has ended, in one
    /// atomic statement, unless the lock is paused (the SELECT then gives no
    /// row); returns the token only when it took the lock.
    fn acquire(tables: &Tables) -> Vec<Acquire> {
        let Tables {
            table, settings, ..
        } = tables;
        let returning = if tables.fencing {
            "fencing_token"
        } else {
            CLOCK_MICROS
        };
        vec![Acquire::Returning(compile::<Self>(&format!(
            "INSERT INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
             SELECT :name, {end}, {NOW}, :locked_by{token_insert} \
             WHERE COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = :name), \
             :capacity) <> 0 \
             ON CONFLICT (name) DO UPDATE SET lock_until = excluded.lock_until, \
             locked_at = excluded.locked_at, locked_by = excluded.locked_by{token_update} \
             WHERE lock_until <= {NOW} \
             RETURNING {returning}",
            end = Self::lease_end(":lock_at_most_for"),
            token_column = tables.token_column(),
            token_insert = tables.token_insert::<Self>(),
            token_update = tables.token_update::<Self>("fencing_token", |next| next),
        )))]
    }

    /// A write: the transaction takes the file's write lock here.
    fn lock_row(table: &TableName) -> String {
        format!("UPDATE {table} SET name = name WHERE name = :name RETURNING 1")
    }

    fn columns() -> Statement<TableParam> {
        Statement::new(
            "SELECT name FROM pragma_table_info(?1, COALESCE(?2, 'main'))".to_owned(),
            [TableParam::Table, TableParam::Schema],
        )
    }

    /// `id INTEGER PRIMARY KEY` is the rowid: it grows, so the newest run
    /// has the greatest.
    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Name => "VARCHAR(64) NOT NULL",
            ColumnType::Holder => "VARCHAR(255) NOT NULL",
            ColumnType::Time => "TIMESTAMP(3) NOT NULL",
            ColumnType::Count => "INTEGER NOT NULL",
            ColumnType::OptionalCount => "INTEGER",
            ColumnType::Counter => "BIGINT NOT NULL DEFAULT 0",
            ColumnType::Big => "BIGINT NOT NULL",
            ColumnType::OptionalBig => "BIGINT",
            ColumnType::Outcome => "VARCHAR(16) NOT NULL",
            ColumnType::Id => "INTEGER PRIMARY KEY",
        }
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
