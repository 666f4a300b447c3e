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

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, RUN_HISTORY_LEN, ReleaseWatch,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult};

use crate::dialect::{
    Acquire, AdminStatements, Counts, Dialect, DurationEncoding, KindStatements, LeaseParam,
    ReleaseRun, RunStatements, SHARED_MARKER, Statement, Statements, TableParam, Token,
    history_statement, host_port_database, last_runs_statement,
};
use crate::engine::SqlLocks;
use crate::provider::{server_provider, sql_provider};
use crate::table::TableName;

const NOW: &str = "UTC_TIMESTAMP(3)";

/// The database's clock in UTC, read when evaluated: after the statement has
/// waited for the row's lock, unlike `UTC_TIMESTAMP`, fixed at its start (a
/// lease taken after a wait would start, and end, in the past). `SYSDATE`
/// is in the session's time zone, whose offset is `NOW() - UTC_TIMESTAMP()`.
/// In microseconds, for a lease's end, rounded up to the column's
/// milliseconds (`+ 999` microseconds), so the stored lease is never
/// shorter than the guard's.
const AFTER_WAIT: &str =
    "(SYSDATE(6) - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND)";

/// [`AFTER_WAIT`] in the column's milliseconds (truncated), for `locked_at`
/// and to test whether a lease has ended.
const AFTER_WAIT_MS: &str =
    "(SYSDATE(3) - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND)";

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

/// How many rows one prune statement deletes at most: MySQL 8 cannot be
/// told to cancel a statement the caller gave up on (see
/// `bounded_statement`), so each is kept short (0.02 to 0.35 s pruning
/// 300,000 names on the test machine's MariaDB, see BENCHMARKS.md) and
/// sent again until it deletes fewer, in one transaction.
const PRUNE_BATCH: u64 = 10_000;

/// MySQL's statements: an `UPDATE` of an ended lease, then an `INSERT
/// IGNORE` of a new row when it matched none; durations in microseconds.
pub(crate) struct MySqlDialect;

/// The database's clock in microseconds since 1970 (a macro, for `concat!`).
macro_rules! clock_micros {
    () => {
        "CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) AS SIGNED)"
    };
}

/// The database's clock in microseconds since 1970.
const CLOCK_MICROS: &str = clock_micros!();

/// Without the fencing column: the token is the database's clock, read after
/// the acquisition.
const CLOCK_TOKEN: &str = concat!("SELECT ", clock_micros!());

impl Dialect for MySqlDialect {
    type Db = sqlx::MySql;
    const STORE: &'static str = "mysql";
    const TITLE: &'static str = "MySQL/MariaDB";
    const URL_SHAPE: &'static str = "mysql://[user[:password]@]host[:port]/database";
    const SERVER: bool = true;
    const DURATIONS: DurationEncoding = DurationEncoding::Micros;

    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    fn millis_since_1970(column: &str) -> String {
        format!("CAST(UNIX_TIMESTAMP({column}) * 1000 AS SIGNED)")
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
        let (token_update, token_column, token_insert, holder_token) = if fencing {
            (
                format!(
                    ", fencing_token = LAST_INSERT_ID(GREATEST(COALESCE(fencing_token, 0) + 1, {CLOCK_MICROS}))"
                ),
                ", fencing_token",
                // A new row's counter starts at the clock: above the tokens
                // of a row deleted before (pruned, or by hand).
                format!(", LAST_INSERT_ID({CLOCK_MICROS})"),
                "l.fencing_token",
            )
        } else {
            (String::new(), "", String::new(), "NULL")
        };
        let token = if fencing {
            Token::LastInsertId
        } else {
            Token::Clock(CLOCK_TOKEN)
        };
        // The lock's capacity: the stored one, else the acquisition's default.
        let capacity =
            format!("COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = ?), ?)");
        // What `lock_state` and `list_locks` answer (see `AdminStatements`).
        let state_columns = format!(
            "l.locked_by, {locked_at}, \
             TIMESTAMPDIFF(MICROSECOND, {NOW}, l.lock_until) DIV 1000, \
             {holder_token}, CAST(s.capacity AS SIGNED), r.renewals, \
             TIMESTAMPDIFF(MICROSECOND, r.renewed_at, {NOW}) DIV 1000",
            locked_at = Self::millis_since_1970("l.locked_at"),
        );
        // The live exclusive holder of the name `n` (not the shared marker)
        // and its renewals.
        let exclusive_of = |n: &str| {
            format!(
                "LEFT JOIN {table} l ON l.name = {n} AND l.lock_until > {NOW} \
                 AND l.locked_by <> '{SHARED_MARKER}' \
                 LEFT JOIN {holders} r ON r.name = l.name AND r.locked_by = l.locked_by \
                 AND r.permits = 0"
            )
        };
        // The live shared holders (see `engine::kinds::HolderRow`), `filter` added.
        let holders_where = |filter: &str| {
            format!(
                "SELECT h.locked_by, {locked_at}, \
                 TIMESTAMPDIFF(MICROSECOND, {NOW}, h.lock_until) DIV 1000, h.fencing_token, \
                 CAST(h.permits AS SIGNED), h.renewals, \
                 TIMESTAMPDIFF(MICROSECOND, h.renewed_at, {NOW}) DIV 1000, h.name \
                 FROM {holders} h WHERE h.permits > 0 AND h.lock_until > {NOW}{filter}",
                locked_at = Self::millis_since_1970("h.locked_at"),
            )
        };
        let waiters_where = |filter: &str| {
            format!(
                "SELECT name, COUNT(*) FROM {waiters} WHERE queued_until > {NOW}{filter} GROUP BY name"
            )
        };
        let (kind_token, token_params, renewal_token, new_row_token): (
            _,
            &'static [LeaseParam],
            _,
            _,
        ) = if fencing {
            (
                format!("SELECT fencing_token FROM {table} WHERE name = ?"),
                &[Name],
                "l.fencing_token",
                format!(", {CLOCK_MICROS}"),
            )
        } else {
            (CLOCK_TOKEN.to_owned(), &[], "NULL", String::new())
        };
        Statements {
            acquire: vec![
                // Takes over the row if its lease has ended and the lock is
                // not paused; matches one row only then. With the fencing
                // column, `LAST_INSERT_ID(expr)` hands the new token back in
                // the same answer.
                Acquire::Counting(
                    Statement::new(
                        format!(
                            "UPDATE {table} SET lock_until = {AFTER_WAIT} + INTERVAL ? + 999 MICROSECOND, \
                             locked_at = {AFTER_WAIT_MS}, locked_by = ?{token_update} \
                             WHERE name = ? AND lock_until <= {AFTER_WAIT_MS} AND {capacity} <> 0"
                        ),
                        &[LockAtMostFor, LockedBy, Name, Name, Capacity],
                    ),
                    token,
                ),
                // Inserts the row when there is none and the lock is not
                // paused; one row inserted only then.
                Acquire::Counting(
                    Statement::new(
                        format!(
                            "INSERT IGNORE INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                             SELECT ?, {NOW} + INTERVAL ? MICROSECOND, {NOW}, ?{token_insert} FROM DUAL \
                             WHERE {capacity} <> 0"
                        ),
                        &[Name, LockAtMostFor, LockedBy, Name, Capacity],
                    ),
                    token,
                ),
            ],
            extend: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = {AFTER_WAIT} + INTERVAL ? + 999 MICROSECOND \
                     WHERE name = ? AND locked_by = ? AND lock_until > {AFTER_WAIT_MS}"
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
                    "SELECT TIMESTAMPDIFF(MICROSECOND, {NOW}, lock_until) FROM {table} \
                     WHERE name = ? AND NOT EXISTS \
                     (SELECT 1 FROM {settings} s WHERE s.name = ? AND s.capacity = 0)"
                ),
                &[Name, Name],
            ),
            admin: AdminStatements {
                lock_state: Statement::new(
                    format!(
                        "SELECT {state_columns} FROM (SELECT 1) AS one {exclusive} \
                         LEFT JOIN {settings} s ON s.name = ?",
                        exclusive = exclusive_of("?"),
                    ),
                    &[Name, Name],
                ),
                list_locks: Statement::new(
                    format!(
                        "SELECT {state_columns}, n.name FROM \
                         (SELECT name FROM {table} WHERE lock_until > {NOW} \
                         UNION SELECT name FROM {settings} UNION SELECT name FROM {runs}) AS n \
                         {exclusive} LEFT JOIN {settings} s ON s.name = n.name",
                        exclusive = exclusive_of("n.name"),
                    ),
                    &[],
                ),
                // MySQL assigns left to right, each assignment seeing the
                // ones before: `resume_to` reads `capacity` before it changes.
                set_capacity: Statement::new(
                    format!(
                        "INSERT INTO {settings} (name, capacity, resume_to) VALUES (?, ?, NULL) \
                         ON DUPLICATE KEY UPDATE \
                         resume_to = CASE WHEN ? <> 0 THEN NULL \
                         WHEN capacity <> 0 THEN capacity ELSE resume_to END, \
                         capacity = ?"
                    ),
                    &[Name, Capacity, Capacity, Capacity],
                ),
                resume: [
                    Statement::new(
                        format!(
                            "DELETE FROM {settings} WHERE name = ? AND capacity = 0 AND resume_to IS NULL"
                        ),
                        &[Name],
                    ),
                    Statement::new(
                        format!(
                            "UPDATE {settings} SET capacity = resume_to, resume_to = NULL \
                             WHERE name = ? AND capacity = 0 AND resume_to IS NOT NULL"
                        ),
                        &[Name],
                    ),
                ],
                force_release: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = {NOW} WHERE name = ? AND lock_until > {NOW}"
                    ),
                    &[Name],
                ),
                prune: Statement::new(
                    format!(
                        "DELETE FROM {table} WHERE lock_until + INTERVAL ? MICROSECOND < {NOW} \
                         LIMIT {PRUNE_BATCH}"
                    ),
                    &[UnusedFor],
                ),
                prune_batch: Some(PRUNE_BATCH),
            },
            runs: RunStatements {
                // No statement can both update and insert: the release, then
                // `record`, in one transaction.
                release: ReleaseRun::Transaction,
                record: [
                    // UTC_TIMESTAMP(3) is one instant throughout a statement.
                    Statement::new(
                        format!(
                            "INSERT INTO {runs} \
                             (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
                             VALUES (?, {NOW} - INTERVAL (? * 1000) MICROSECOND, {NOW}, ?, ?, ?, ?)"
                        ),
                        &[Name, RunMillis, RunMillis, Outcome, Holder, RunToken],
                    ),
                    // The derived table (materialised, for its LIMIT) lets
                    // the DELETE read the table it deletes from.
                    Statement::new(
                        format!(
                            "DELETE FROM {runs} WHERE name = ? AND id < (SELECT id FROM \
                             (SELECT id FROM {runs} WHERE name = ? ORDER BY id DESC \
                             LIMIT 1 OFFSET {}) AS newest)",
                            RUN_HISTORY_LEN - 1
                        ),
                        &[Name, Name],
                    ),
                ],
                history: history_statement::<Self>(&runs),
                last: last_runs_statement::<Self>(&runs),
                // An anti-join, as on the other databases.
                prune: Statement::new(
                    format!(
                        "DELETE FROM {runs} WHERE NOT EXISTS \
                         (SELECT 1 FROM {table} l WHERE l.name = {runs}.name) LIMIT {PRUNE_BATCH}"
                    ),
                    &[],
                ),
            },
            kinds: KindStatements {
                ensure_row: Statement::new(
                    format!(
                        "INSERT IGNORE INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                         VALUES (?, {NOW}, {NOW}, ''{new_row_token})"
                    ),
                    &[Name],
                ),
                lock_row: Statement::new(
                    format!("SELECT 1 FROM {table} WHERE name = ? FOR UPDATE"),
                    &[Name],
                ),
                state: Statement::new(
                    format!(
                        "SELECT (SELECT COUNT(*) FROM {table} WHERE name = ? AND lock_until > {NOW} \
                         AND locked_by <> '{SHARED_MARKER}'), \
                         (SELECT CAST(capacity AS SIGNED) FROM {settings} WHERE name = ?), \
                         (SELECT CAST(COALESCE(SUM(permits), 0) AS SIGNED) FROM {holders} \
                         WHERE name = ? AND permits > 0 AND lock_until > {NOW}), \
                         (SELECT COUNT(*) FROM {waiters} WHERE name = ? AND queued_until > {NOW})"
                    ),
                    &[Name, Name, Name, Name],
                ),
                take: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = GREATEST(lock_until, {NOW} + INTERVAL ? MICROSECOND), \
                         locked_at = {NOW}, locked_by = '{SHARED_MARKER}'{counter} WHERE name = ?",
                        counter = if fencing {
                            format!(
                                ", fencing_token = GREATEST(COALESCE(fencing_token, 0) + 1, {CLOCK_MICROS})"
                            )
                        } else {
                            String::new()
                        },
                    ),
                    &[LockAtMostFor, Name],
                ),
                token: Statement::new(kind_token, token_params),
                drop_ended: Statement::new(
                    format!("DELETE FROM {holders} WHERE name = ? AND lock_until <= {NOW}"),
                    &[Name],
                ),
                join: Statement::new(
                    format!(
                        "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         VALUES (?, ?, ?, {NOW}, {NOW} + INTERVAL ? MICROSECOND, ?, 0, {NOW})"
                    ),
                    &[Name, LockedBy, Permits, LockAtMostFor, HolderToken],
                ),
                extend: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {NOW} + INTERVAL ? MICROSECOND, \
                         renewals = renewals + 1, renewed_at = {NOW} \
                         WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
                    ),
                    &[LockAtMostFor, Name, LockedBy],
                ),
                release: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = LEAST(lock_until, GREATEST(\
                         locked_at + INTERVAL ? MICROSECOND, {NOW} + INTERVAL ? MICROSECOND)) \
                         WHERE name = ? AND locked_by = ? AND lock_until > {NOW}"
                    ),
                    &[LockAtLeastFor, KeepFor, Name, LockedBy],
                ),
                settle: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = COALESCE((SELECT MAX(h.lock_until) \
                         FROM {holders} h WHERE h.name = ? AND h.permits > 0 AND h.lock_until > {NOW}), \
                         {NOW}) WHERE name = ? AND locked_by = '{SHARED_MARKER}' AND lock_until > {NOW}"
                    ),
                    &[Name, Name],
                ),
                renew_exclusive: Statement::new(
                    format!(
                        "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         SELECT l.name, l.locked_by, 0, l.locked_at, l.lock_until, {renewal_token}, 1, {NOW} \
                         FROM {table} l WHERE l.name = ? AND l.locked_by = ? \
                         ON DUPLICATE KEY UPDATE renewals = renewals + 1, \
                         renewed_at = VALUES(renewed_at), lock_until = VALUES(lock_until)"
                    ),
                    &[Name, LockedBy],
                ),
                notify: None,
                queue: Statement::new(
                    format!(
                        "INSERT INTO {waiters} (name, waiter, queued_until) \
                         VALUES (?, ?, {NOW} + INTERVAL ? MICROSECOND) \
                         ON DUPLICATE KEY UPDATE queued_until = VALUES(queued_until)"
                    ),
                    &[Name, Waiter, HoldPlaceFor],
                ),
                dequeue: Statement::new(
                    format!(
                        "DELETE FROM {waiters} WHERE name = ? AND (waiter = ? OR queued_until <= {NOW})"
                    ),
                    &[Name, Waiter],
                ),
                holders_of: Statement::new(holders_where(" AND h.name = ?"), &[Name]),
                holders: Statement::new(holders_where(""), &[]),
                waiters_of: Statement::new(waiters_where(" AND name = ?"), &[Name]),
                waiters: Statement::new(waiters_where(""), &[]),
                end_holders: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {NOW} \
                         WHERE name = ? AND permits > 0 AND lock_until > {NOW}"
                    ),
                    &[Name],
                ),
                prune: [
                    Statement::new(
                        format!(
                            "DELETE FROM {holders} WHERE lock_until + INTERVAL ? MICROSECOND < {NOW} \
                             LIMIT {PRUNE_BATCH}"
                        ),
                        &[UnusedFor],
                    ),
                    Statement::new(
                        format!(
                            "DELETE FROM {waiters} WHERE queued_until + INTERVAL ? MICROSECOND < {NOW} \
                             LIMIT {PRUNE_BATCH}"
                        ),
                        &[UnusedFor],
                    ),
                ],
            },
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

    fn create_settings_table(settings: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {settings} (\
             name VARCHAR(64) NOT NULL, \
             capacity INT NOT NULL CHECK (capacity >= 0), \
             resume_to INT, \
             PRIMARY KEY (name))"
        )
    }

    fn create_runs_table(runs: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {runs} (\
             id BIGINT NOT NULL AUTO_INCREMENT, \
             name VARCHAR(64) NOT NULL, \
             started_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             finished_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             duration_ms BIGINT NOT NULL, \
             outcome VARCHAR(16) NOT NULL, \
             locked_by VARCHAR(255) NOT NULL, \
             fencing_token BIGINT NULL, \
             PRIMARY KEY (id), \
             UNIQUE KEY (name, id))"
        )
    }

    fn create_holders_table(holders: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {holders} (\
             name VARCHAR(64) NOT NULL, \
             locked_by VARCHAR(255) NOT NULL, \
             permits INT NOT NULL CHECK (permits >= 0), \
             locked_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             lock_until TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             fencing_token BIGINT NULL, \
             renewals BIGINT NOT NULL DEFAULT 0, \
             renewed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             PRIMARY KEY (name, locked_by))"
        )
    }

    fn create_waiters_table(waiters: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {waiters} (\
             name VARCHAR(64) NOT NULL, \
             waiter VARCHAR(64) NOT NULL, \
             queued_until TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
             PRIMARY KEY (name, waiter))"
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
