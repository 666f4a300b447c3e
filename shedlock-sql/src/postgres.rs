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

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, RUN_HISTORY_LEN,
    ReleaseNotifiers, ReleaseWatch,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};

use crate::dialect::{
    Acquire, AdminStatements, Counts, Dialect, DurationEncoding, KindStatements, LeaseParam,
    ReleaseRun, RunStatements, SHARED_MARKER, Statement, Statements, TableParam, history_statement,
    host_port_database, last_runs_statement,
};
use crate::engine::SqlLocks;
use crate::pg_releases::{PgReleaseFeed, channel_of};
use crate::provider::{server_provider, sql_provider};
use crate::releases::ReleaseFeed;
use crate::table::TableName;

/// The database's clock, in UTC, as `TIMESTAMP` (without time zone).
const NOW: &str = "(now() AT TIME ZONE 'UTC')";

/// The database's clock, in UTC, at the start of the current statement: the
/// lock-kinds transactions read it after waiting for the name's row lock,
/// when `now()` (the transaction's start) may have fallen behind.
const STATEMENT_NOW: &str = "(statement_timestamp() AT TIME ZONE 'UTC')";

/// The database's clock, in UTC, read when evaluated: where a statement
/// takes or extends a lease, after it has waited for the row's lock
/// (`now()` is fixed at the statement's start, and a lease taken after a
/// wait would start, and end, in the past).
const AFTER_WAIT: &str = "(clock_timestamp() AT TIME ZONE 'UTC')";

/// The end of a lease of `$n` milliseconds from [`AFTER_WAIT`], rounded up to
/// the column's milliseconds (PostgreSQL rounds to the nearest), so the
/// stored lease is never shorter than the guard's.
fn lease_end(n: u8) -> String {
    format!(
        "date_trunc('milliseconds', {AFTER_WAIT} + ${n}::bigint * INTERVAL '1 millisecond' \
         + INTERVAL '999 microseconds')"
    )
}

/// The database's clock in microseconds since 1970, read when evaluated.
const CLOCK_MICROS: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

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
    locks: SqlLocks<PgDialect>,
}

impl PostgresLockProvider {
    /// Uses `pool`, a pool you built (TLS, sizes, timeouts). Keep
    /// `test_before_acquire(true)` (sqlx's default): without it, a connection
    /// the server closed while idle fails the next lock operation (the
    /// provider logs a warning). See [`pool_options`](Self::pool_options)
    /// for the other settings. Nothing is sent until the first lock.
    pub fn new(pool: PgPool) -> Self {
        PostgresLockProvider {
            locks: SqlLocks::new(pool),
        }
    }
}

sql_provider!(PostgresLockProvider, PgPool);
server_provider!(
    PostgresLockProvider,
    PgDialect,
    PgPoolOptions,
    url = "postgres://[user[:password]@]host[:port]/database",
    idle_limit = "idle_session_timeout"
);

/// PostgreSQL's statements: one `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE
/// .. RETURNING` per acquisition, durations in milliseconds.
pub(crate) struct PgDialect;

impl Dialect for PgDialect {
    type Db = sqlx::Postgres;
    const STORE: &'static str = "postgres";
    const TITLE: &'static str = "PostgreSQL";
    const URL_SHAPE: &'static str = "postgres://[user[:password]@]host[:port]/database";
    const SERVER: bool = true;
    const DURATIONS: DurationEncoding = DurationEncoding::Millis;

    fn placeholder(index: usize) -> String {
        format!("${index}")
    }

    fn millis_since_1970(column: &str) -> String {
        format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000 AS BIGINT)")
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
        let channel = channel_of(table);
        // `$n` milliseconds, as an interval.
        let ms = |n: u8| format!("${n}::bigint * INTERVAL '1 millisecond'");
        // Milliseconds from `from` to `to`.
        let ms_between = |from: &str, to: &str| {
            format!("CAST(EXTRACT(EPOCH FROM ({to} - {from})) * 1000 AS BIGINT)")
        };
        let statement_now_ms = format!("date_trunc('milliseconds', {STATEMENT_NOW})");
        let after_wait_ms = format!("date_trunc('milliseconds', {AFTER_WAIT})");
        // The plain release's UPDATE, which the release with a run records beside.
        let release_update = format!(
            "UPDATE {table} SET lock_until = date_trunc('milliseconds', LEAST(lock_until, GREATEST(\
             locked_at + $3::bigint * INTERVAL '1 millisecond', \
             {NOW} + $4::bigint * INTERVAL '1 millisecond'))) \
             WHERE name = $1 AND locked_by = $2 AND lock_until > {NOW} \
             RETURNING name"
        );
        // A run finished now, by the database's clock, that took `$n` ms.
        let run_values = |name: u8, millis: u8| {
            format!(
                "${name}, {NOW} - ${millis}::bigint * INTERVAL '1 millisecond', {NOW}, ${millis}::bigint"
            )
        };
        // Drops the runs of `$1` older than the newest `keep` (older than
        // the `keep`th newest).
        let trim = |keep: usize| {
            format!(
                "DELETE FROM {runs} WHERE name = $1 AND id < \
                 (SELECT id FROM {runs} WHERE name = $1 ORDER BY id DESC LIMIT 1 OFFSET {})",
                keep - 1
            )
        };
        let (token_column, token_insert, token_update, returning, holder_token) = if fencing {
            (
                ", fencing_token",
                // A new row's counter starts at the clock: above the tokens
                // of a row deleted before (pruned, or by hand).
                format!(", {CLOCK_MICROS}"),
                format!(
                    ", fencing_token = GREATEST(COALESCE(l.fencing_token, 0) + 1, {CLOCK_MICROS})"
                ),
                "l.fencing_token",
                "l.fencing_token",
            )
        } else {
            // No counter: microseconds of the database's clock.
            (
                "",
                String::new(),
                String::new(),
                CLOCK_MICROS,
                "CAST(NULL AS BIGINT)",
            )
        };
        // The lock's capacity: the stored one, else the acquisition's default.
        let capacity = format!(
            "COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = $1), $4::bigint)"
        );
        // What `lock_state` and `list_locks` answer (see `AdminStatements`).
        let state_columns = format!(
            "l.locked_by, {locked_at}, \
             CAST(EXTRACT(EPOCH FROM (l.lock_until - {NOW})) * 1000 AS BIGINT), \
             {holder_token}, CAST(s.capacity AS BIGINT), r.renewals, {renewed_ago}",
            locked_at = Self::millis_since_1970("l.locked_at"),
            renewed_ago = ms_between("r.renewed_at", NOW),
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
                 {left}, h.fencing_token, CAST(h.permits AS BIGINT), h.renewals, {ago}, h.name \
                 FROM {holders} h WHERE h.permits > 0 AND h.lock_until > {NOW}{filter}",
                locked_at = Self::millis_since_1970("h.locked_at"),
                left = ms_between(NOW, "h.lock_until"),
                ago = ms_between("h.renewed_at", NOW),
            )
        };
        let waiters_where = |filter: &str| {
            format!(
                "SELECT name, COUNT(*) FROM {waiters} WHERE queued_until > {NOW}{filter} GROUP BY name"
            )
        };
        let (kind_token, token_params, renewal_token): (_, &'static [LeaseParam], _) = if fencing {
            (
                format!("SELECT fencing_token FROM {table} WHERE name = $1"),
                &[Name],
                "l.fencing_token",
            )
        } else {
            (
                format!("SELECT {CLOCK_MICROS}"),
                &[],
                "CAST(NULL AS BIGINT)",
            )
        };
        Statements {
            // Inserts the row, or takes it over if its lease has ended, in
            // one atomic statement, unless the lock is paused (the SELECT
            // then gives no row); returns the token only when it took the lock.
            // `locked_at` is truncated to the column's milliseconds: rounded
            // up, a release within the same millisecond (`lock_at_least_for`
            // counts from it) would keep the lock into the next one.
            acquire: vec![Acquire::Returning(Statement::new(
                format!(
                    "INSERT INTO {table} AS l (name, lock_until, locked_at, locked_by{token_column}) \
                     SELECT $1, {end}, {after_wait_ms}, $3{token_insert} \
                     WHERE {capacity} <> 0 \
                     ON CONFLICT (name) DO UPDATE SET lock_until = {end}, \
                     locked_at = {after_wait_ms}, locked_by = EXCLUDED.locked_by{token_update} \
                     WHERE l.lock_until <= {AFTER_WAIT} \
                     RETURNING {returning}",
                    end = lease_end(2),
                ),
                &[Name, LockAtMostFor, LockedBy, Capacity],
            ))],
            extend: Statement::new(
                format!(
                    "UPDATE {table} SET lock_until = {end} \
                     WHERE name = $1 AND locked_by = $2 AND lock_until > {AFTER_WAIT}",
                    end = lease_end(3),
                ),
                &[Name, LockedBy, LockAtMostFor],
            ),
            // Truncated to the column's milliseconds: PostgreSQL would round
            // the microseconds of `now()` up half the time, and an immediate
            // release would keep the lock for a fraction of a millisecond.
            // The name is announced on the table's channel (letters, digits
            // and `_.:#` only: safe in the literal) in the same statement, so
            // waiters in other processes hear it once it is committed (a lease
            // kept for `lock_at_least_for` too: their next attempt reads its
            // new end). One row of answer: one row changed.
            release: Statement::new(
                format!(
                    "WITH released AS ({release_update}) \
                     SELECT pg_notify('{channel}', name) FROM released"
                ),
                &[Name, LockedBy, LockAtLeastFor, KeepFor],
            ),
            lease_left: Statement::new(
                format!(
                    "SELECT CAST(EXTRACT(EPOCH FROM (lock_until - {NOW})) * 1000 AS BIGINT) FROM {table} \
                     WHERE name = $1 AND NOT EXISTS \
                     (SELECT 1 FROM {settings} s WHERE s.name = $1 AND s.capacity = 0)"
                ),
                &[Name],
            ),
            admin: AdminStatements {
                lock_state: Statement::new(
                    format!(
                        "SELECT {state_columns} FROM (SELECT 1) AS one {exclusive} \
                         LEFT JOIN {settings} s ON s.name = $1",
                        exclusive = exclusive_of("$1"),
                    ),
                    &[Name],
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
                set_capacity: Statement::new(
                    format!(
                        "INSERT INTO {settings} AS s (name, capacity, resume_to) VALUES ($1, $2, NULL) \
                         ON CONFLICT (name) DO UPDATE SET \
                         resume_to = CASE WHEN EXCLUDED.capacity <> 0 THEN NULL \
                         WHEN s.capacity <> 0 THEN s.capacity ELSE s.resume_to END, \
                         capacity = EXCLUDED.capacity"
                    ),
                    &[Name, Capacity],
                ),
                resume: [
                    Statement::new(
                        format!(
                            "DELETE FROM {settings} WHERE name = $1 AND capacity = 0 AND resume_to IS NULL"
                        ),
                        &[Name],
                    ),
                    Statement::new(
                        format!(
                            "UPDATE {settings} SET capacity = resume_to, resume_to = NULL \
                             WHERE name = $1 AND capacity = 0 AND resume_to IS NOT NULL"
                        ),
                        &[Name],
                    ),
                ],
                // Announced like a release, so waiters of other processes
                // take over at once; one row of answer: one lease ended.
                force_release: Statement::new(
                    format!(
                        "WITH released AS (\
                         UPDATE {table} SET lock_until = date_trunc('milliseconds', {NOW}) \
                         WHERE name = $1 AND lock_until > {NOW} \
                         RETURNING name) \
                         SELECT pg_notify('{channel}', name) FROM released"
                    ),
                    &[Name],
                ),
                prune: Statement::new(
                    format!(
                        "DELETE FROM {table} \
                         WHERE lock_until + $1::bigint * INTERVAL '1 millisecond' < {NOW}"
                    ),
                    &[UnusedFor],
                ),
                prune_batch: None,
            },
            runs: RunStatements {
                // One statement: the release, its run (lease_lost when the
                // release matched nothing) and the trim, which does not see
                // the new row (one snapshot), so it keeps one run fewer.
                release: ReleaseRun::Combined(Statement::new(
                    format!(
                        "WITH released AS ({release_update}), \
                         recorded AS (INSERT INTO {runs} \
                         (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
                         SELECT {values}, CASE WHEN EXISTS (SELECT 1 FROM released) \
                         THEN $6::varchar ELSE 'lease_lost' END, $7, $8::bigint), \
                         trimmed AS ({trim}) \
                         SELECT pg_notify('{channel}', name) FROM released",
                        values = run_values(1, 5),
                        trim = trim(RUN_HISTORY_LEN - 1),
                    ),
                    &[
                        Name,
                        LockedBy,
                        LockAtLeastFor,
                        KeepFor,
                        RunMillis,
                        Outcome,
                        Holder,
                        RunToken,
                    ],
                )),
                record: [
                    Statement::new(
                        format!(
                            "INSERT INTO {runs} \
                             (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
                             VALUES ({values}, $3, $4, $5::bigint)",
                            values = run_values(1, 2),
                        ),
                        &[Name, RunMillis, Outcome, Holder, RunToken],
                    ),
                    Statement::new(trim(RUN_HISTORY_LEN), &[Name]),
                ],
                history: history_statement::<Self>(&runs),
                last: last_runs_statement::<Self>(&runs),
                // An anti-join (hashed): `NOT IN (SELECT ..)` of more names
                // than work_mem holds is compared row by row, quadratically.
                prune: Statement::new(
                    format!(
                        "DELETE FROM {runs} r WHERE NOT EXISTS \
                         (SELECT 1 FROM {table} l WHERE l.name = r.name)"
                    ),
                    &[],
                ),
            },
            kinds: KindStatements {
                ensure_row: Statement::new(
                    format!(
                        "INSERT INTO {table} (name, lock_until, locked_at, locked_by{token_column}) \
                         VALUES ($1, {statement_now_ms}, {statement_now_ms}, ''{token_insert}) ON CONFLICT (name) DO NOTHING"
                    ),
                    &[Name],
                ),
                lock_row: Statement::new(
                    format!("SELECT 1 FROM {table} WHERE name = $1 FOR UPDATE"),
                    &[Name],
                ),
                state: Statement::new(
                    format!(
                        "SELECT (SELECT COUNT(*) FROM {table} WHERE name = $1 AND lock_until > {STATEMENT_NOW} \
                         AND locked_by <> '{SHARED_MARKER}'), \
                         (SELECT CAST(capacity AS BIGINT) FROM {settings} WHERE name = $1), \
                         (SELECT COALESCE(SUM(permits), 0) FROM {holders} \
                         WHERE name = $1 AND permits > 0 AND lock_until > {STATEMENT_NOW}), \
                         (SELECT COUNT(*) FROM {waiters} WHERE name = $1 AND queued_until > {STATEMENT_NOW})"
                    ),
                    &[Name],
                ),
                take: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = GREATEST(lock_until, {STATEMENT_NOW} + {d}), \
                         locked_at = {statement_now_ms}, locked_by = '{SHARED_MARKER}'{counter} WHERE name = $1",
                        d = ms(2),
                        counter = if fencing {
                            format!(
                                ", fencing_token = GREATEST(COALESCE(fencing_token, 0) + 1, {CLOCK_MICROS})"
                            )
                        } else {
                            String::new()
                        },
                    ),
                    &[Name, LockAtMostFor],
                ),
                token: Statement::new(kind_token, token_params),
                drop_ended: Statement::new(
                    format!(
                        "DELETE FROM {holders} WHERE name = $1 AND lock_until <= {STATEMENT_NOW}"
                    ),
                    &[Name],
                ),
                join: Statement::new(
                    format!(
                        "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         VALUES ($1, $2, $3, {statement_now_ms}, {STATEMENT_NOW} + {d}, $5, 0, {statement_now_ms})",
                        d = ms(4),
                    ),
                    &[Name, LockedBy, Permits, LockAtMostFor, HolderToken],
                ),
                extend: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {STATEMENT_NOW} + {d}, renewals = renewals + 1, \
                         renewed_at = {statement_now_ms} \
                         WHERE name = $1 AND locked_by = $2 AND lock_until > {STATEMENT_NOW}",
                        d = ms(3),
                    ),
                    &[Name, LockedBy, LockAtMostFor],
                ),
                release: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = date_trunc('milliseconds', LEAST(lock_until, \
                         GREATEST(locked_at + {least}, {STATEMENT_NOW} + {keep}))) \
                         WHERE name = $1 AND locked_by = $2 AND lock_until > {STATEMENT_NOW}",
                        least = ms(3),
                        keep = ms(4),
                    ),
                    &[Name, LockedBy, LockAtLeastFor, KeepFor],
                ),
                settle: Statement::new(
                    format!(
                        "UPDATE {table} SET lock_until = COALESCE((SELECT MAX(h.lock_until) \
                         FROM {holders} h WHERE h.name = $1 AND h.permits > 0 AND h.lock_until > {STATEMENT_NOW}), \
                         {statement_now_ms}) WHERE name = $1 AND locked_by = '{SHARED_MARKER}' AND lock_until > {STATEMENT_NOW}"
                    ),
                    &[Name],
                ),
                renew_exclusive: Statement::new(
                    format!(
                        "INSERT INTO {holders} AS h (name, locked_by, permits, locked_at, lock_until, \
                         fencing_token, renewals, renewed_at) \
                         SELECT l.name, l.locked_by, 0, l.locked_at, l.lock_until, {renewal_token}, 1, {statement_now_ms} \
                         FROM {table} l WHERE l.name = $1 AND l.locked_by = $2 \
                         ON CONFLICT (name, locked_by) DO UPDATE SET renewals = h.renewals + 1, \
                         renewed_at = EXCLUDED.renewed_at, lock_until = EXCLUDED.lock_until"
                    ),
                    &[Name, LockedBy],
                ),
                notify: Some(Statement::new(
                    format!("SELECT pg_notify('{channel}', $1)"),
                    &[Name],
                )),
                queue: Statement::new(
                    format!(
                        "INSERT INTO {waiters} AS w (name, waiter, queued_until) \
                         VALUES ($1, $2, {STATEMENT_NOW} + {d}) ON CONFLICT (name, waiter) \
                         DO UPDATE SET queued_until = EXCLUDED.queued_until",
                        d = ms(3),
                    ),
                    &[Name, Waiter, HoldPlaceFor],
                ),
                dequeue: Statement::new(
                    format!(
                        "DELETE FROM {waiters} WHERE name = $1 AND (waiter = $2 OR queued_until <= {STATEMENT_NOW})"
                    ),
                    &[Name, Waiter],
                ),
                holders_of: Statement::new(holders_where(" AND h.name = $1"), &[Name]),
                holders: Statement::new(holders_where(""), &[]),
                waiters_of: Statement::new(waiters_where(" AND name = $1"), &[Name]),
                waiters: Statement::new(waiters_where(""), &[]),
                end_holders: Statement::new(
                    format!(
                        "UPDATE {holders} SET lock_until = {statement_now_ms} \
                         WHERE name = $1 AND permits > 0 AND lock_until > {STATEMENT_NOW}"
                    ),
                    &[Name],
                ),
                prune: [
                    Statement::new(
                        format!(
                            "DELETE FROM {holders} WHERE lock_until + {d} < {STATEMENT_NOW}",
                            d = ms(1)
                        ),
                        &[UnusedFor],
                    ),
                    Statement::new(
                        format!(
                            "DELETE FROM {waiters} WHERE queued_until + {d} < {STATEMENT_NOW}",
                            d = ms(1)
                        ),
                        &[UnusedFor],
                    ),
                ],
            },
        }
    }

    fn columns() -> Statement<TableParam> {
        // to_regclass resolves the name as a statement would (search_path, case folding).
        Statement::new(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped"
                .to_owned(),
            &[TableParam::Qualified],
        )
    }

    fn create_table(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             name VARCHAR(64) NOT NULL, \
             lock_until TIMESTAMP(3) NOT NULL, \
             locked_at TIMESTAMP(3) NOT NULL, \
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
             id BIGSERIAL PRIMARY KEY, \
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
             permits INT NOT NULL CHECK (permits >= 0), \
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
