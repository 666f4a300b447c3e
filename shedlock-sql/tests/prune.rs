//! `prune` on big tables and past its timeout, on PostgreSQL and MariaDB
//! (and the big table on SQLite): 300,000 names with runs are pruned with
//! the default statement timeout; a prune that runs out of time (a slow
//! statement, or one waiting for a row) is cancelled on the server, so no
//! statement of it keeps running there, nor holds the rows of returning
//! names; an `unused_for` no lock row can reach is refused, naming the
//! largest accepted.
//!
//! `SHEDLOCK_PRUNE_ROWS` sets the number of names of the big tables
//! (default 300,000).

mod support;

use std::time::Duration;

use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_sql::sqlx;
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};

/// The names of a big table: `SHEDLOCK_PRUNE_ROWS`, else 300,000.
fn big_table_rows() -> i64 {
    std::env::var("SHEDLOCK_PRUNE_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(300_000)
}

/// The statement timeout of the prunes that run out of time.
const TINY_TIMEOUT: Duration = Duration::from_millis(300);

/// What the tests do to a provider's tables besides locking, in its SQL.
trait Tables: LockProvider + Clone + Sized {
    /// `prune` of the provider.
    async fn prune_unused(&self, unused_for: Duration) -> Result<u64, LockError>;

    /// The provider with another statement timeout.
    fn with_timeout(self, timeout: Duration) -> Self;

    /// The lock table.
    fn table(&self) -> String;

    /// Fills the lock table with `rows` names `bulk-<i>`, each with a run
    /// in the history: the leases of odd ones ended a day ago, of even ones
    /// a minute ago (then the planner's statistics are brought up to date,
    /// as autovacuum does for a table this size).
    async fn fill(&self, rows: i64);

    /// One number `sql` answers.
    async fn count(&self, sql: &str) -> i64;

    /// Drops the lock table and its companions (a big table's space is given back).
    async fn drop_tables(&self);

    /// The statements on the lock table or its companions (or in their
    /// triggers) that run on the server now, in other sessions.
    async fn running_statements(&self) -> i64;

    /// A lock row of `name` whose lease ended long ago, and a run of
    /// `orphan`, a name with no lock row.
    async fn unused_lock_and_orphan_run(&self, name: &str, orphan: &str);

    /// Locks the run rows of `name` until the returned transaction ends.
    async fn hold_runs_of(&self, name: &str) -> Box<dyn std::any::Any + Send>;

    /// Makes deleting a run take 30 s (a trigger that sleeps).
    async fn slow_down_deleting_runs(&self);

    /// Deleting runs takes no time again.
    async fn stop_slowing_down(&self);
}

macro_rules! tables_impl {
    (
        $provider:ty, $p:literal,
        fill: [$($fill:literal),*],
        running: $running:literal,
        long_ago: $long_ago:literal,
        slow: [$($slow:literal),*],
        fast: $fast:literal,
        drop: $drop:literal
    ) => {
        impl Tables for $provider {
            async fn prune_unused(&self, unused_for: Duration) -> Result<u64, LockError> {
                self.prune(unused_for).await
            }

            fn with_timeout(self, timeout: Duration) -> Self {
                self.with_statement_timeout(timeout)
            }

            fn table(&self) -> String {
                self.table_name()
            }

            async fn fill(&self, rows: i64) {
                let (table, runs) = (self.table_name(), format!("{}_runs", self.table_name()));
                for sql in [$($fill),*] {
                    let sql = sql
                        .replace("{table}", &table)
                        .replace("{runs}", &runs)
                        .replace("{rows}", &rows.to_string());
                    sqlx::raw_sql(&sql)
                        .execute(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"));
                }
            }

            async fn count(&self, sql: &str) -> i64 {
                let (count,): (i64,) = sqlx::query_as(sql)
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
                count
            }

            async fn drop_tables(&self) {
                let table = self.table_name();
                for suffix in ["", "_settings", "_runs", "_holders", "_waiters"] {
                    let sql = format!("DROP TABLE {table}{suffix}");
                    sqlx::query(&sql)
                        .execute(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"));
                }
                sqlx::raw_sql($drop)
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", $drop));
            }

            async fn running_statements(&self) -> i64 {
                let (count,): (i64,) = sqlx::query_as($running)
                    .bind(self.table_name())
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", $running));
                count
            }

            async fn unused_lock_and_orphan_run(&self, name: &str, orphan: &str) {
                let table = self.table_name();
                let lock = format!(
                    "INSERT INTO {table} (name, lock_until, locked_at, locked_by) \
                     VALUES ({p}, {long_ago}, {long_ago}, 'java-host')",
                    p = $p, long_ago = $long_ago,
                );
                let run = format!(
                    "INSERT INTO {table}_runs (name, started_at, finished_at, duration_ms, \
                     outcome, locked_by) VALUES ({p}, {long_ago}, {long_ago}, 1, 'ok', 'java-host')",
                    p = $p, long_ago = $long_ago,
                );
                for (sql, name) in [(lock, name), (run, orphan)] {
                    sqlx::query(&sql)
                        .bind(name)
                        .execute(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"));
                }
            }

            async fn hold_runs_of(&self, name: &str) -> Box<dyn std::any::Any + Send> {
                let mut holder = self
                    .pool()
                    .begin()
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
                let sql = format!(
                    "SELECT id FROM {}_runs WHERE name = {} FOR UPDATE",
                    self.table_name(),
                    $p
                );
                let held: Vec<(i64,)> = sqlx::query_as(&sql)
                    .bind(name)
                    .fetch_all(&mut *holder)
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
                assert_eq!(held.len(), 1, "{sql}");
                Box::new(holder)
            }

            async fn slow_down_deleting_runs(&self) {
                let slow: &[&str] = &[$($slow),*];
                for sql in slow {
                    let sql = sql.replace("{table}", &self.table_name());
                    sqlx::raw_sql(&sql)
                        .execute(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"));
                }
            }

            async fn stop_slowing_down(&self) {
                let sql = $fast.replace("{table}", &self.table_name());
                sqlx::raw_sql(&sql)
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
            }
        }
    };
}

tables_impl!(
    PostgresLockProvider, "$1",
    fill: [
        "INSERT INTO {table} (name, lock_until, locked_at, locked_by) \
         SELECT 'bulk-' || i, t, t, 'bulk-filler' FROM (SELECT i, (now() AT TIME ZONE 'UTC') - \
         CASE WHEN i % 2 = 1 THEN INTERVAL '1 day' ELSE INTERVAL '1 minute' END AS t \
         FROM generate_series(1, {rows}) AS i) AS names",
        "INSERT INTO {runs} (name, started_at, finished_at, duration_ms, outcome, locked_by) \
         SELECT 'bulk-' || i, now(), now(), 1, 'ok', 'bulk-filler' FROM generate_series(1, {rows}) AS i",
        "ANALYZE {table}; ANALYZE {runs}"
    ],
    running: "SELECT COUNT(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
              AND state = 'active' AND query LIKE '%' || $1 || '%'",
    long_ago: "'2000-01-01 00:00:00'",
    slow: [
        "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(30); RETURN OLD; END $$",
        "CREATE TRIGGER {table}_slow BEFORE DELETE ON {table}_runs \
         FOR EACH ROW EXECUTE FUNCTION {table}_slow()"
    ],
    fast: "DROP TRIGGER {table}_slow ON {table}_runs; DROP FUNCTION {table}_slow()",
    drop: "SELECT 1"
);

tables_impl!(
    MySqlLockProvider, "?",
    fill: [
        "INSERT INTO {table} (name, lock_until, locked_at, locked_by) \
         SELECT CONCAT('bulk-', seq), t, t, 'bulk-filler' FROM (SELECT seq, UTC_TIMESTAMP(3) - \
         INTERVAL IF(seq % 2 = 1, 86400, 60) SECOND AS t FROM seq_1_to_{rows}) AS names",
        "INSERT INTO {runs} (name, started_at, finished_at, duration_ms, outcome, locked_by) \
         SELECT CONCAT('bulk-', seq), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 1, 'ok', 'bulk-filler' \
         FROM seq_1_to_{rows}",
        "ANALYZE TABLE {table}, {runs}"
    ],
    running: "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
              AND COMMAND <> 'Sleep' AND INFO LIKE CONCAT('%', ?, '%')",
    long_ago: "'2000-01-01 00:00:00'",
    slow: [
        "CREATE TRIGGER {table}_slow BEFORE DELETE ON {table}_runs \
         FOR EACH ROW SET @{table}_slept = SLEEP(30)"
    ],
    fast: "DROP TRIGGER {table}_slow",
    drop: "SELECT 1"
);

tables_impl!(
    SqliteLockProvider, "?1",
    fill: [
        "INSERT INTO {table} (name, lock_until, locked_at, locked_by) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         SELECT 'bulk-' || i, t, t, 'bulk-filler' FROM (SELECT i, strftime('%Y-%m-%d %H:%M:%f', \
         'now', CASE WHEN i % 2 = 1 THEN '-1 day' ELSE '-1 minute' END) AS t FROM n)",
        "INSERT INTO {runs} (name, started_at, finished_at, duration_ms, outcome, locked_by) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         SELECT 'bulk-' || i, strftime('%Y-%m-%d %H:%M:%f', 'now'), \
         strftime('%Y-%m-%d %H:%M:%f', 'now'), 1, 'ok', 'bulk-filler' FROM n",
        "ANALYZE"
    ],
    running: "SELECT 0 WHERE ?1 IS NOT NULL",
    long_ago: "'2000-01-01 00:00:00.000'",
    slow: [],
    fast: "",
    drop: "VACUUM"
);

/// A big table, most of whose names are still in use, is pruned with the
/// default statement timeout: the rows of the names unused for an hour go,
/// with their runs; the others stay, with theirs.
async fn a_big_table_is_pruned_within_the_default_timeout<P: Tables>(provider: P) {
    let rows = big_table_rows();
    provider.fill(rows).await;
    let pruned = provider
        .prune_unused(Duration::from_secs(3600))
        .await
        .unwrap_or_else(|err| panic!("pruning {rows} names: {err}"));
    let unused = (rows + 1) / 2;
    assert_eq!(i64::try_from(pruned).ok(), Some(unused), "locks pruned");
    let table = provider.table();
    let left = provider
        .count(&format!("SELECT COUNT(*) FROM {table}"))
        .await;
    assert_eq!(left, rows - unused, "lock rows left");
    let runs_left = provider
        .count(&format!("SELECT COUNT(*) FROM {table}_runs"))
        .await;
    assert_eq!(
        runs_left,
        rows - unused,
        "the runs of the names still in use"
    );
    let orphans = provider
        .count(&format!(
            "SELECT COUNT(*) FROM {table}_runs r WHERE NOT EXISTS \
             (SELECT 1 FROM {table} l WHERE l.name = r.name)"
        ))
        .await;
    assert_eq!(orphans, 0, "runs of pruned names stayed");
    provider.drop_tables().await;
}

/// The lock row of a name unused for long, and a run of a name without
/// a lock row: what the cancelled prunes would delete.
const RETURNING: &str = "returning-job";
const REMOVED: &str = "removed-job";

/// A prune that runs out of time because deleting a run takes long fails,
/// and the server has cancelled it: no statement of it keeps running, and
/// a lock row it had deleted is free to be taken at once (PostgreSQL's
/// `NOT IN` on a big table ran on for hours, holding the rows it deleted).
async fn a_prune_running_past_its_timeout_is_cancelled_on_the_server<P: Tables>(provider: P) {
    provider
        .unused_lock_and_orphan_run(RETURNING, REMOVED)
        .await;
    provider.slow_down_deleting_runs().await;
    a_prune_out_of_time_leaves_nothing_behind(&provider).await;
    provider.stop_slowing_down().await;
    the_prune_goes_through_once_in_time(&provider).await;
}

/// The same for a prune that waits past its timeout for a run row another
/// transaction holds (MariaDB's lock wait lasts `innodb_lock_wait_timeout`,
/// 50 s by default).
async fn a_prune_waiting_past_its_timeout_for_a_row_is_cancelled_on_the_server<P: Tables>(
    provider: P,
) {
    provider
        .unused_lock_and_orphan_run(RETURNING, REMOVED)
        .await;
    let holder = provider.hold_runs_of(REMOVED).await;
    a_prune_out_of_time_leaves_nothing_behind(&provider).await;
    drop(holder);
    the_prune_goes_through_once_in_time(&provider).await;
}

/// A prune with a tiny timeout fails, telling how to give it more time;
/// no statement of it runs on, and `RETURNING`'s row, which it had
/// deleted, can be taken at once.
async fn a_prune_out_of_time_leaves_nothing_behind<P: Tables>(provider: &P) {
    let hurried = provider.clone().with_timeout(TINY_TIMEOUT);
    let err = match hurried.prune_unused(Duration::ZERO).await {
        Err(err @ LockError::Store { .. }) => err.to_string(),
        other => panic!("a prune out of time must fail: {other:?}"),
    };
    assert_eq!(
        provider.running_statements().await,
        0,
        "the prune the caller gave up on still runs on the server ({err})"
    );
    assert!(err.contains("with_statement_timeout"), "{err}");
    let returning = LockConfiguration::new(RETURNING, Duration::from_secs(30), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"));
    match provider.try_lock(&returning).await {
        Ok(Some(guard)) => guard.unlock().await.unwrap_or_else(|err| panic!("{err}")),
        other => panic!("'{RETURNING}' must be free after the failed prune: {other:?}"),
    }
}

/// The prune with the default timeout deletes what the cancelled one did not.
async fn the_prune_goes_through_once_in_time<P: Tables>(provider: &P) {
    let pruned = provider
        .prune_unused(Duration::ZERO)
        .await
        .unwrap_or_else(|err| panic!("the prune in time: {err}"));
    assert_eq!(pruned, 1, "'{RETURNING}' was not pruned");
    let table = provider.table();
    let runs_left = provider
        .count(&format!("SELECT COUNT(*) FROM {table}_runs"))
        .await;
    assert_eq!(runs_left, 0, "the run of '{REMOVED}' stayed");
}

/// An `unused_for` longer than the largest accepted is refused before any
/// statement, with the largest accepted in the message (PostgreSQL
/// answered "interval out of range"); the largest is accepted.
async fn an_unused_for_beyond_the_largest_is_refused<P: Tables>(provider: P) {
    let years = |years: u64| Duration::from_secs(years * 31_557_600);
    match provider.prune_unused(years(300_000)).await {
        Err(LockError::InvalidConfiguration(message)) => {
            assert!(message.contains("at most 1000years"), "{message}")
        }
        other => panic!("300000y must be refused: {other:?}"),
    }
    provider
        .prune_unused(years(1000))
        .await
        .unwrap_or_else(|err| panic!("the largest unused_for accepted: {err}"));
}

/// A module `$store` of `$case`s, each on a table of its own.
macro_rules! prune_tests {
    ($store:ident: $($case:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let table = shedlock_test_support::sql::unique_table_name("prune");
                    super::$case(crate::support::$store(&table).await).await;
                }
            )*
        }
    };
}

prune_tests!(postgres:
    a_big_table_is_pruned_within_the_default_timeout,
    a_prune_running_past_its_timeout_is_cancelled_on_the_server,
    a_prune_waiting_past_its_timeout_for_a_row_is_cancelled_on_the_server,
    an_unused_for_beyond_the_largest_is_refused,
);
prune_tests!(mysql:
    a_big_table_is_pruned_within_the_default_timeout,
    a_prune_running_past_its_timeout_is_cancelled_on_the_server,
    a_prune_waiting_past_its_timeout_for_a_row_is_cancelled_on_the_server,
    an_unused_for_beyond_the_largest_is_refused,
);
prune_tests!(sqlite:
    a_big_table_is_pruned_within_the_default_timeout,
    an_unused_for_beyond_the_largest_is_refused,
);
