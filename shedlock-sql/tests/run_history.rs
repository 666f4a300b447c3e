//! Last runs on PostgreSQL, MariaDB and SQLite (`<table>_runs`): the table
//! keeps the last 20 rows per name, a release after a lease that ended
//! records the run as lost, history off records nothing, and a missing runs
//! table is an error that gives its DDL. (Every outcome through the
//! attribute: the workspace's `tests/run_history.rs`; the command:
//! `shedlock-cli/tests/sql.rs`.)

mod support;

use std::time::Duration;

use shedlock_core::{
    FinishedRun, LockConfiguration, LockingTaskExecutor, RUN_HISTORY_LEN, RunOutcome,
};
use shedlock_sql::{
    MySqlLockProvider, PostgresLockProvider, SqlDatabase, SqlLockProvider, SqliteLockProvider,
};
use shedlock_test_support::conformance::unique_name;
use shedlock_test_support::sql::TestTable;
use support::assert_store_errors_say;
fn config(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, Duration::from_secs(30), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A provider with direct access to its tables, whose history can be
/// switched.
trait RunsTable: TestTable + Clone {
    fn history(self, record: bool) -> Self;

    /// How many rows `<table>_runs` holds for `name`.
    async fn run_rows(&self, name: &str) -> i64 {
        self.count_rows("_runs", name).await
    }
}

impl<D: SqlDatabase> RunsTable for SqlLockProvider<D>
where
    SqlLockProvider<D>: TestTable,
{
    fn history(self, record: bool) -> Self {
        self.with_run_history(record)
    }
}

/// 25 runs of one name leave 20 rows, the newest, read newest first; another
/// name's runs are not touched.
async fn the_table_keeps_the_last_20_runs_of_each_name<P: RunsTable>(provider: P) {
    let (name, other) = (unique_name("trimmed"), unique_name("untouched"));
    let executor = LockingTaskExecutor::new(provider.clone());
    let ran = executor.execute(&config(&other), async {}).await;
    assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    let mut tokens = Vec::new();
    for _ in 0..25 {
        let job = async {
            match shedlock_core::current_lock() {
                Some(lock) => lock.fencing_token().await.ok(),
                None => None,
            }
        };
        let token = match executor.execute(&config(&name), job).await {
            Ok(Some(token)) => token,
            other => panic!("the run did not happen: {other:?}"),
        };
        tokens.push(token);
    }
    assert_eq!(provider.run_rows(&name).await, RUN_HISTORY_LEN as i64);
    assert_eq!(provider.run_rows(&other).await, 1);
    let runs = provider
        .run_history(&name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let newest: Vec<Option<u64>> = tokens.iter().rev().take(RUN_HISTORY_LEN).copied().collect();
    let read: Vec<Option<u64>> = runs.iter().map(|run| run.fencing_token).collect();
    assert_eq!(read, newest, "the newest 20, newest first");
    assert!(runs.iter().all(|run| run.outcome == RunOutcome::Ok));
}

/// A guard whose lease was taken away (force-released) records its run as
/// lost when released after it, and the release touches nothing.
async fn a_release_after_the_lease_ended_records_a_lost_run<P: RunsTable>(provider: P) {
    let name = unique_name("ended");
    let guard = match provider.try_lock(&config(&name)).await {
        Ok(Some(guard)) => guard,
        other => panic!("'{name}' should be free: {other:?}"),
    };
    let token = guard
        .fencing_token()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(provider.force_release(&name).await.ok(), Some(1));
    let run = FinishedRun {
        duration: Duration::from_millis(1234),
        outcome: RunOutcome::Ok,
        fencing_token: Some(token),
    };
    guard
        .unlock_after_run(run)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let runs = provider
        .run_history(&name)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, RunOutcome::LeaseLost);
    assert_eq!(runs[0].duration, Duration::from_millis(1234));
    assert_eq!(runs[0].fencing_token, Some(token));
    assert_eq!(
        runs[0].finished_at.duration_since(runs[0].started_at).ok(),
        Some(Duration::from_millis(1234)),
        "started = finished - duration, by the database's clock: {runs:?}"
    );
}

/// Without `with_run_history(true)` (off by default on SQL), or with
/// `with_run_history(false)`, the release records nothing.
async fn history_off_records_nothing<P: RunsTable>(default: P) {
    for provider in [
        default.clone(),
        default.clone().history(true).history(false),
    ] {
        let name = unique_name("unrecorded");
        let executor = LockingTaskExecutor::new(provider.clone());
        let ran = executor.execute(&config(&name), async {}).await;
        assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
        assert_eq!(provider.run_rows(&name).await, 0);
        let runs = provider.run_history(&name).await;
        assert!(runs.as_ref().is_ok_and(Vec::is_empty), "{runs:?}");
    }
}

/// Without `<table>_runs` (made before it existed), the first lock fails
/// with an error naming it and giving its DDL.
async fn a_missing_runs_table_is_a_clear_error_giving_its_ddl<P: RunsTable>(provider: P, fresh: P) {
    provider.execute("DROP TABLE {table}_runs").await;
    let results = [
        fresh.try_lock(&config("no-runs")).await.map(drop),
        fresh.run_history("no-runs").await.map(drop),
    ];
    assert_store_errors_say(
        results,
        "a missing runs table",
        &[
            "_runs'",
            "create_table_if_missing",
            "CREATE TABLE IF NOT EXISTS",
            "duration_ms BIGINT",
        ],
    );
}

/// The providers on `table`, created if missing; `History::Default`: as
/// built, without `with_run_history`.
#[derive(Clone, Copy, PartialEq)]
enum History {
    On,
    Default,
}

fn with<P: RunsTable>(provider: P, history: History) -> P {
    match history {
        History::On => provider.history(true),
        History::Default => provider,
    }
}

async fn postgres(table: &str, history: History) -> PostgresLockProvider {
    with(support::postgres(table).await, history)
}

async fn mysql(table: &str, history: History) -> MySqlLockProvider {
    with(support::mysql(table).await, history)
}

async fn sqlite(table: &str, history: History) -> SqliteLockProvider {
    let file = support::sqlite_file(table);
    with(
        shedlock_test_support::sql::sqlite(&file, table).await,
        history,
    )
}

macro_rules! run_history_tests {
    ($($database:ident),*) => {$(
        mod $database {
            use shedlock_test_support::sql::unique_table_name;
            use super::History::{Default, On};

            run_history_tests!(@on_a_new_table $database:
                the_table_keeps_the_last_20_runs_of_each_name: On,
                a_release_after_the_lease_ended_records_a_lost_run: On,
                history_off_records_nothing: Default,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_missing_runs_table_is_a_clear_error_giving_its_ddl() {
                let table = unique_table_name("no_runs");
                let provider = super::$database(&table, On).await;
                let fresh = super::$database(&table, On).await;
                super::a_missing_runs_table_is_a_clear_error_giving_its_ddl(provider, fresh).await;
            }
        }
    )*};
    // Each `$case`, given the provider on a new table, its history `$history`.
    (@on_a_new_table $database:ident: $($case:ident: $history:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let provider = super::$database(&unique_table_name("runs"), $history).await;
            super::$case(provider).await;
        }
    )*};
}

run_history_tests!(postgres, mysql, sqlite);
