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

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, RUN_HISTORY_LEN, ReleaseWatch,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::dialect::{
    Acquire, AdminStatements, Counts, Dialect, DurationEncoding, KindStatements, LeaseParam,
    ReleaseRun, RunStatements, SHARED_MARKER, Statement, Statements, TableParam, history_statement,
    last_runs_statement,
};
use crate::engine::{DEFAULT_STATEMENT_TIMEOUT, Failure, SqlLocks, parse_url};
use crate::provider::sql_provider;
use crate::table::TableName;

/// `strftime` format of every time in the table.
const FORMAT: &str = "'%Y-%m-%d %H:%M:%f'";

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
#[derive(Clone)]
pub struct SqliteLockProvider {
    locks: SqlLocks<SqliteDialect>,
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
        Self::connect_with(parse_url::<SqliteDialect>(url)?).await
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
                    return Err(Failure::of(err).into_error::<SqliteDialect>(
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
        SqliteLockProvider {
            locks: SqlLocks::new(pool),
        }
    }
}

sql_provider!(SqliteLockProvider, SqlitePool);

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the file for now.
fn is_busy(err: &sqlx::Error) -> bool {
    let code = err
        .as_database_error()
        .and_then(|err| err.code())
        .and_then(|code| code.parse::<i32>().ok());
    // Extended result codes keep the primary code in their low byte.
    matches!(code.map(|code| code & 0xff), Some(5 | 6))
}

/// SQLite's statements: one `INSERT .. ON CONFLICT (name) DO UPDATE .. WHERE
/// .. RETURNING` per acquisition, durations as date modifiers.
pub(crate) struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const STORE: &'static str = "sqlite";
    const TITLE: &'static str = "SQLite";
    const URL_SHAPE: &'static str = "sqlite://path/to/file.db";
    const SERVER: bool = false;
    const DURATIONS: DurationEncoding = DurationEncoding::DateModifier;

    fn placeholder(index: usize) -> String {
        format!("?{index}")
    }

    fn millis_since_1970(column: &str) -> String {
        format!("CAST(ROUND((julianday({column}) - 2440587.5) * 86400000.0) AS INTEGER)")
    }

    fn statements(table: &TableName, fencing: bool) -> Statements {
        use LeaseParam::{
            Capacity, HoldPlaceFor, Holder, HolderToken, KeepFor, LockAtLeastFor, LockAtMostFor,
            LockedBy, Name, Outcome, Permits, RunMillis, RunToken, UnusedFor, Waiter,
        };
        let settings = table.settings();
        let runs = table.runs();
        let holders = table.holders();
        let waiters = table.waiters();
        // Milliseconds from `from` to `to` (times, or 'now').
        let ms_between = |from: &str, to: &str| {
            format!("CAST(ROUND((julianday({to}) - julianday({from})) * 86400000.0) AS INTEGER)")
        };
        let now = format!("strftime({FORMAT}, 'now')");
        let (token_column, token_insert, token_update, returning, holder_token) = if fencing {
            (
                ", fencing_token",
                // A new row's counter starts at the clock: above the tokens
                // of a row deleted before (pruned, or by hand).
                format!(", {CLOCK_MICROS}"),
                format!(", fencing_token = MAX(COALESCE(fencing_token, 0) + 1, {CLOCK_MICROS})"),
                "fencing_token",
                "l.fencing_token",
            )
        } else {
            // No counter: the database's clock.
            ("", String::new(), String::new(), CLOCK_MICROS, "NULL")
        };
        // The lock's capacity: the stored one, else the acquisition's default.
        let capacity =
            format!("COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = ?1), ?4)");
        // What `lock_state` and `list_locks` answer (see `AdminStatements`).
        let state_columns = format!(
            "l.locked_by, CAST(ROUND((julianday(l.locked_at) - 2440587.5) * 86400000.0) AS INTEGER), \
             CAST(ROUND((julianday(l.lock_until) - julianday('now')) * 86400000.0) AS INTEGER), \
             {holder_token}, s.capacity, r.renewals, {renewed_ago}",
            renewed_ago = ms_between("r.renewed_at", "'now'"),
        );
        // The live exclusive holder of the name `n` (not the shared marker)
        // and its renewals.
        let exclusive_of = |n: &str| {
            format!(
                "LEFT JOIN {table} l ON l.name = {n} AND l.lock_until > {now} \
                 AND l.locked_by <> '{SHARED_MARKER}' \
                 LEFT JOIN {holders} r ON r.name = l.name AND r.locked_by = l.locked_by \
                 AND r.permits = 0"
            )
        };
        // The live shared holders (see `engine::kinds::HolderRow`), `filter` added.
        let holders_where = |filter: &str| {
            format!(
                "SELECT h.locked_by, {locked_at}, {left}, h.fencing_token, h.permits, h.renewals, \
                 {ago}, h.name FROM {holders} h WHERE h.permits > 0 AND h.lock_until > {now}{filter}",
                locked_at = Self::millis_since_1970("h.locked_at"),
                left = ms_between("'now'", "h.lock_until"),
                ago = ms_between("h.renewed_at", "'now'"),
            )
        };
        let waiters_where = |filter: &str| {
            format!(
                "SELECT name, COUNT(*) FROM {waiters} WHERE queued_until > {now}{filter} GROUP BY name"
            )
        };
        let (kind_token, token_params, renewal_token): (_, &'static [LeaseParam], _) = if fencing {
            (
                format!("SELECT fencing_token FROM {table} WHERE name = ?1"),
                &[Name],
                "l.fencing_token",
            )
        } else {
            (format!("SELECT {CLOCK_MICROS}"), &[], "NULL")
        };
        let until = |n: u8| format!("strftime({FORMAT}, 'now', ?{n})");
        Statements {
            // Inserts the row, or takes it over if its lease has ended, in
            // one atomic statement, unless the lock is paused (the SELECT
            // then gives no row); returns the token only when it took the lock.
            acquire: vec![Acquire::Returning(Statement::new(
                format!(
                    "INSERT INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                     SELECT ?1, strftime({FORMAT}, 'now', ?2), {now}, ?3{token_insert} \
                     WHERE {capacity} <> 0 \
                     ON CONFLICT (name) DO UPDATE SET lock_until = excluded.lock_until, \
                     locked_at = excluded.locked_at, locked_by = excluded.locked_by{token_update} \
                     WHERE lock_until <= {now} \
                     RETURNING {returning}"
                ),
                &[Name, LockAtMostFor, LockedBy, Capacity],
            ))],
            extend: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = strftime({FORMAT}, 'now', ?3) \
                     WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}"
                ),
                &[Name, LockedBy, LockAtMostFor],
            ),
            release: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = MIN(lock_until, MAX(\
                     strftime({FORMAT}, locked_at, ?3), strftime({FORMAT}, 'now', ?4))) \
                     WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}"
                ),
                &[Name, LockedBy, LockAtLeastFor, KeepFor],
            ),
            lease_left: Statement::new(
                format!(
                    "SELECT CAST(ROUND((julianday(lock_until) - julianday('now')) * 86400000.0) AS INTEGER) \
                     FROM {table} WHERE name = ?1 AND NOT EXISTS \
                     (SELECT 1 FROM {settings} s WHERE s.name = ?1 AND s.capacity = 0)"
                ),
                &[Name],
            ),
            admin: AdminStatements {
                lock_state: Statement::new(
                    format!(
                        "SELECT {state_columns} FROM (SELECT 1) AS one {exclusive} \
                         LEFT JOIN {settings} s ON s.name = ?1",
                        exclusive = exclusive_of("?1"),
                    ),
                    &[Name],
                ),
                list_locks: Statement::new(
                    format!(
                        "SELECT {state_columns}, n.name FROM \
                         (SELECT name FROM {table} WHERE lock_until > {now} \
                         UNION SELECT name FROM {settings} UNION SELECT name FROM {runs}) AS n \
                         {exclusive} LEFT JOIN {settings} s ON s.name = n.name",
                        exclusive = exclusive_of("n.name"),
                    ),
                    &[],
                ),
                // Unqualified columns in DO UPDATE are the stored row's.
                set_capacity: Statement::new(
                    format!(
                        "INSERT INTO {settings} (name, capacity, resume_to) VALUES (?1, ?2, NULL) \
                         ON CONFLICT (name) DO UPDATE SET \
                         resume_to = CASE WHEN excluded.capacity <> 0 THEN NULL \
                         WHEN capacity <> 0 THEN capacity ELSE resume_to END, \
                         capacity = excluded.capacity"
                    ),
                    &[Name, Capacity],
                ),
                resume: [
                    Statement::new(
                        format!(
                            "DELETE FROM {settings} WHERE name = ?1 AND capacity = 0 AND resume_to IS NULL"
                        ),
                        &[Name],
                    ),
                    Statement::new(
                        format!(
                            "UPDATE {settings} SET capacity = resume_to, resume_to = NULL \
                             WHERE name = ?1 AND capacity = 0 AND resume_to IS NOT NULL"
                        ),
                        &[Name],
                    ),
                ],
                force_release: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = {now} WHERE name = ?1 AND lock_until > {now}"
                    ),
                    &[Name],
                ),
                prune: Statement::new(
                    format!("DELETE FROM {table} WHERE strftime({FORMAT}, lock_until, ?1) < {now}"),
                    &[UnusedFor],
                ),
                prune_batch: None,
            },
            runs: RunStatements {
                // No statement can both update and insert: the release, then
                // `record`, in one transaction (one write lock on the file).
                release: ReleaseRun::Transaction,
                record: [
                    // 'now' is one instant throughout a statement.
                    Statement::new(
                        format!(
                            "INSERT INTO {runs} \
                             (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
                             VALUES (?1, strftime({FORMAT}, julianday('now') - ?2 / 86400000.0), \
                             {now}, ?2, ?3, ?4, ?5)"
                        ),
                        &[Name, RunMillis, Outcome, Holder, RunToken],
                    ),
                    Statement::new(
                        format!(
                            "DELETE FROM {runs} WHERE name = ?1 AND id < (SELECT id FROM {runs} \
                             WHERE name = ?1 ORDER BY id DESC LIMIT 1 OFFSET {})",
                            RUN_HISTORY_LEN - 1
                        ),
                        &[Name],
                    ),
                ],
                history: history_statement::<Self>(&runs),
                last: last_runs_statement::<Self>(&runs),
                // An anti-join, as on the other databases.
                prune: Statement::new(
                    format!(
                        "DELETE FROM {runs} WHERE NOT EXISTS \
                         (SELECT 1 FROM {table} l WHERE l.name = {runs}.name)"
                    ),
                    &[],
                ),
            },
            kinds: KindStatements {
                ensure_row: Statement::new(
                    format!(
                        "INSERT INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                         VALUES (?1, {now}, {now}, ''{token_insert}) ON CONFLICT (name) DO NOTHING"
                    ),
                    &[Name],
                ),
                // A write: the transaction takes the file's write lock here.
                lock_row: Statement::new(
                    format!("UPDATE {table} SET name = name WHERE name = ?1 RETURNING 1"),
                    &[Name],
                ),
                state: Statement::new(
                    format!(
                        "SELECT (SELECT COUNT(*) FROM {table} WHERE name = ?1 AND lock_until > {now} \
                         AND locked_by <> '{SHARED_MARKER}'), \
                         (SELECT capacity FROM {settings} WHERE name = ?1), \
                         (SELECT COALESCE(SUM(permits), 0) FROM {holders} \
                         WHERE name = ?1 AND permits > 0 AND lock_until > {now}), \
                         (SELECT COUNT(*) FROM {waiters} WHERE name = ?1 AND queued_until > {now})"
                    ),
                    &[Name],
                ),
                take: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = MAX(lock_until, {d}), \
                         locked_at = {now}, locked_by = '{SHARED_MARKER}'{counter} WHERE name = ?1",
                        d = until(2),
                        counter = if fencing {
                            format!(
                                ", fencing_token = MAX(COALESCE(fencing_token, 0) + 1, {CLOCK_MICROS})"
                            )
                        } else {
                            String::new()
                        },
                    ),
                    &[Name, LockAtMostFor],
                ),
                token: Statement::new(kind_token, token_params),
                drop_ended: Statement::new(
                    format!("DELETE FROM {holders} WHERE name = ?1 AND lock_until <= {now}"),
                    &[Name],
                ),
                join: Statement::new(
                    format!(
                        "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         VALUES (?1, ?2, ?3, {now}, {d}, ?5, 0, {now})",
                        d = until(4),
                    ),
                    &[Name, LockedBy, Permits, LockAtMostFor, HolderToken],
                ),
                extend: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {d}, renewals = renewals + 1, \
                         renewed_at = {now} WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}",
                        d = until(3),
                    ),
                    &[Name, LockedBy, LockAtMostFor],
                ),
                release: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = MIN(lock_until, MAX(\
                         strftime({FORMAT}, locked_at, ?3), {keep})) \
                         WHERE name = ?1 AND locked_by = ?2 AND lock_until > {now}",
                        keep = until(4),
                    ),
                    &[Name, LockedBy, LockAtLeastFor, KeepFor],
                ),
                settle: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = COALESCE((SELECT MAX(h.lock_until) \
                         FROM {holders} h WHERE h.name = ?1 AND h.permits > 0 AND h.lock_until > {now}), \
                         {now}) WHERE name = ?1 AND locked_by = '{SHARED_MARKER}' AND lock_until > {now}"
                    ),
                    &[Name],
                ),
                renew_exclusive: Statement::new(
                    format!(
                        "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         SELECT l.name, l.locked_by, 0, l.locked_at, l.lock_until, {renewal_token}, 1, {now} \
                         FROM {table} l WHERE l.name = ?1 AND l.locked_by = ?2 \
                         ON CONFLICT (name, locked_by) DO UPDATE SET renewals = renewals + 1, \
                         renewed_at = excluded.renewed_at, lock_until = excluded.lock_until"
                    ),
                    &[Name, LockedBy],
                ),
                notify: None,
                queue: Statement::new(
                    format!(
                        "INSERT INTO {waiters} (name, waiter, queued_until) VALUES (?1, ?2, {d}) \
                         ON CONFLICT (name, waiter) DO UPDATE SET queued_until = excluded.queued_until",
                        d = until(3),
                    ),
                    &[Name, Waiter, HoldPlaceFor],
                ),
                dequeue: Statement::new(
                    format!(
                        "DELETE FROM {waiters} WHERE name = ?1 AND (waiter = ?2 OR queued_until <= {now})"
                    ),
                    &[Name, Waiter],
                ),
                holders_of: Statement::new(holders_where(" AND h.name = ?1"), &[Name]),
                holders: Statement::new(holders_where(""), &[]),
                waiters_of: Statement::new(waiters_where(" AND name = ?1"), &[Name]),
                waiters: Statement::new(waiters_where(""), &[]),
                end_holders: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {now} \
                         WHERE name = ?1 AND permits > 0 AND lock_until > {now}"
                    ),
                    &[Name],
                ),
                prune: [
                    Statement::new(
                        format!(
                            "DELETE FROM {holders} WHERE strftime({FORMAT}, lock_until, ?1) < {now}"
                        ),
                        &[UnusedFor],
                    ),
                    Statement::new(
                        format!(
                            "DELETE FROM {waiters} WHERE strftime({FORMAT}, queued_until, ?1) < {now}"
                        ),
                        &[UnusedFor],
                    ),
                ],
            },
        }
    }

    fn columns() -> Statement<TableParam> {
        Statement::new(
            "SELECT name FROM pragma_table_info(?1, COALESCE(?2, 'main'))".to_owned(),
            &[TableParam::Table, TableParam::Schema],
        )
    }

    fn create_table(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             name VARCHAR(64) NOT NULL PRIMARY KEY, \
             lock_until TIMESTAMP(3) NOT NULL, \
             locked_at TIMESTAMP(3) NOT NULL, \
             locked_by VARCHAR(255) NOT NULL, \
             fencing_token BIGINT NOT NULL DEFAULT 0)"
        )
    }

    fn create_settings_table(settings: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {settings} (\
             name VARCHAR(64) NOT NULL PRIMARY KEY, \
             capacity INTEGER NOT NULL CHECK (capacity >= 0), \
             resume_to INTEGER)"
        )
    }

    /// `id` is the rowid: it grows, so the newest run has the greatest.
    fn create_runs_table(runs: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {runs} (\
             id INTEGER PRIMARY KEY, \
             name VARCHAR(64) NOT NULL, \
             started_at TIMESTAMP(3) NOT NULL, \
             finished_at TIMESTAMP(3) NOT NULL, \
             duration_ms BIGINT NOT NULL, \
             outcome VARCHAR(16) NOT NULL, \
             locked_by VARCHAR(255) NOT NULL, \
             fencing_token BIGINT, \
             UNIQUE (name, id))"
        )
    }

    fn create_holders_table(holders: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {holders} (\
             name VARCHAR(64) NOT NULL, \
             locked_by VARCHAR(255) NOT NULL, \
             permits INTEGER NOT NULL CHECK (permits >= 0), \
             locked_at TIMESTAMP(3) NOT NULL, \
             lock_until TIMESTAMP(3) NOT NULL, \
             fencing_token BIGINT, \
             renewals BIGINT NOT NULL DEFAULT 0, \
             renewed_at TIMESTAMP(3) NOT NULL, \
             PRIMARY KEY (name, locked_by))"
        )
    }

    fn create_waiters_table(waiters: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {waiters} (\
             name VARCHAR(64) NOT NULL, \
             waiter VARCHAR(64) NOT NULL, \
             queued_until TIMESTAMP(3) NOT NULL, \
             PRIMARY KEY (name, waiter))"
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
