//! The real `shedlock` binary on SQL stores (`--store postgres://..`,
//! `mysql://..`, `sqlite://..`), each against its test database on a table
//! of its own: the same table and JSON as on Redis, changes services see,
//! the last runs (history, show, list), prune, names the library refuses,
//! and passwords kept hidden.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shedlock_core::{LockConfiguration, LockGuard, LockProvider, LockingTaskExecutor};
use shedlock_sql::DEFAULT_TABLE_NAME;
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};
use shedlock_test_support::free_port;
use shedlock_test_support::proxy::FaultProxy;
use shedlock_test_support::sql::{
    TestTable, connect_mysql, connect_postgres, mysql_url, open_sqlite, postgres_url,
    unique_table_name,
};
use support::{
    REPORTS, assert_every_report_listed_with_its_last_run, assert_exited_saying,
    assert_last_runs_shown, assert_ticks_shown, assert_unreachable_without_the_password, json_of,
    row_of, run_every_report, run_three_times, run_ticks_with_a_gap, shedlock_command,
    shedlock_command_async, stderr, succeeded,
};

/// The binary with `args`, on `url` and `table`.
fn shedlock(url: &str, table: &str, args: &[&str]) -> Output {
    shedlock_command(&[&["--store", url, "--table", table], args].concat())
}

/// [`shedlock`] off the async workers (the services' pools keep working).
async fn run(url: &str, table: &str, args: &[&str]) -> Output {
    shedlock_command_async(&[&["--store", url, "--table", table], args].concat()).await
}

fn config(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, Duration::from_secs(60), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"))
}

async fn lock<P: LockProvider>(provider: &P, name: &str) -> LockGuard {
    match provider.try_lock(&config(name)).await {
        Ok(Some(guard)) => guard,
        other => panic!("cannot take '{name}': {other:?}"),
    }
}

/// Takes `name` and gives it back at once: a lock used now.
async fn take_and_release<P: LockProvider>(provider: &P, name: &str) {
    lock(provider, name)
        .await
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("releasing '{name}': {err}"));
}

/// A service's provider on one table, and the URL the command gets.
trait Service: TestTable {
    /// Whether the lock table has a row for `name`.
    async fn has_row(&self, name: &str) -> bool {
        self.count_rows("", name).await == 1
    }

    /// `self` as the tests' service: `worker-7`, recording its runs.
    fn into_service(self) -> Self;

    /// Whether the lock table has a row for `name` with a live lease.
    async fn is_held(&self, name: &str) -> bool;

    /// Makes ShedLock for Java's table (its four columns, no companion
    /// table) and a row of `name` it holds for an hour.
    async fn java_table_holding(&self, name: &str);

    /// Makes deleting a run take 30 s (a trigger that sleeps), and a run of
    /// a name with no lock row, which a prune deletes.
    async fn slow_down_deleting_runs(&self);

    /// Deleting runs takes no time again.
    async fn stop_slowing_down(&self);

    /// The statements on the lock table or its companions (or in their
    /// triggers) that run on the server now, in other sessions.
    async fn running_statements(&self) -> i64;
}

macro_rules! service_impl {
    ($(
        $provider:ty, $placeholder:literal,
        now: $now:literal,
        java_table: $java_table:literal,
        in_an_hour: $in_an_hour:literal,
        slow: $slow:literal,
        fast: $fast:literal,
        running: $running:literal
    );*) => {$(
        impl Service for $provider {
            fn into_service(self) -> Self {
                self.with_locked_by("worker-7").with_run_history(true)
            }

            async fn is_held(&self, name: &str) -> bool {
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE name = {} AND lock_until > {}",
                    self.table_name(),
                    $placeholder,
                    $now
                );
                let (rows,): (i64,) = shedlock_sql::sqlx::query_as(&sql)
                    .bind(name)
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
                rows == 1
            }

            async fn java_table_holding(&self, name: &str) {
                self.execute($java_table).await;
                let sql = format!(
                    "INSERT INTO {} (name, lock_until, locked_at, locked_by) \
                     VALUES ({}, {}, {}, 'java-host')",
                    self.table_name(),
                    $placeholder,
                    $in_an_hour,
                    $now
                );
                shedlock_sql::sqlx::query(&sql)
                    .bind(name)
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
            }

            async fn slow_down_deleting_runs(&self) {
                self.execute($slow).await;
                self.execute(&format!(
                    "INSERT INTO {{table}}_runs (name, started_at, finished_at, duration_ms, \
                     outcome, locked_by) VALUES ('removed-job', {now}, {now}, 1, 'ok', 'java-host')",
                    now = $now
                ))
                .await;
            }

            async fn stop_slowing_down(&self) {
                self.execute($fast).await;
            }

            async fn running_statements(&self) -> i64 {
                let (count,): (i64,) = shedlock_sql::sqlx::query_as($running)
                    .bind(self.table_name())
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{}: {err}", $running));
                count
            }
        }
    )*};
}

service_impl!(
    PostgresLockProvider, "$1",
    now: "(now() AT TIME ZONE 'UTC')",
    java_table: "CREATE TABLE {table} (name VARCHAR(64) NOT NULL, lock_until TIMESTAMP(3) NOT NULL, \
                 locked_at TIMESTAMP(3) NOT NULL, locked_by VARCHAR(255) NOT NULL, PRIMARY KEY (name))",
    in_an_hour: "(now() AT TIME ZONE 'UTC') + INTERVAL '1 hour'",
    slow: "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM pg_sleep(30); RETURN OLD; END $$; \
           CREATE TRIGGER {table}_slow BEFORE DELETE ON {table}_runs \
           FOR EACH ROW EXECUTE FUNCTION {table}_slow()",
    fast: "DROP TRIGGER {table}_slow ON {table}_runs; DROP FUNCTION {table}_slow()",
    running: "SELECT COUNT(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
              AND state = 'active' AND query LIKE '%' || $1 || '%'";
    MySqlLockProvider, "?",
    now: "UTC_TIMESTAMP(3)",
    java_table: "CREATE TABLE {table} (name VARCHAR(64) NOT NULL, lock_until TIMESTAMP(3) NOT NULL, \
                 locked_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
                 locked_by VARCHAR(255) NOT NULL, PRIMARY KEY (name))",
    in_an_hour: "UTC_TIMESTAMP(3) + INTERVAL 1 HOUR",
    slow: "CREATE TRIGGER {table}_slow BEFORE DELETE ON {table}_runs \
           FOR EACH ROW SET @{table}_slept = SLEEP(30)",
    fast: "DROP TRIGGER {table}_slow",
    running: "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
              AND COMMAND <> 'Sleep' AND INFO LIKE CONCAT('%', ?, '%')";
    SqliteLockProvider, "?1",
    now: "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    java_table: "CREATE TABLE {table} (name VARCHAR(64) NOT NULL, lock_until TEXT NOT NULL, \
                 locked_at TEXT NOT NULL, locked_by VARCHAR(255) NOT NULL, PRIMARY KEY (name))",
    in_an_hour: "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 hour')",
    slow: "SELECT 1",
    fast: "SELECT 1",
    running: "SELECT 0 WHERE ?1 IS NOT NULL"
);

/// A service on a new table, created: (provider, URL, table).
async fn service<P: Service>((provider, url, table): (P, String, String)) -> (P, String, String) {
    (provider.on_table(&table).await.into_service(), url, table)
}

/// A PostgreSQL service on a new table.
async fn postgres() -> (PostgresLockProvider, String, String) {
    service(postgres_without_tables().await).await
}

/// A MariaDB service on a new table.
async fn mysql() -> (MySqlLockProvider, String, String) {
    service(mysql_without_tables().await).await
}

/// An SQLite service on a new file, ShedLock's default table.
async fn sqlite() -> (SqliteLockProvider, String, String) {
    service(sqlite_without_tables().await).await
}

/// A PostgreSQL service's pool on a table name nobody has made yet.
async fn postgres_without_tables() -> (PostgresLockProvider, String, String) {
    let table = unique_table_name("cli");
    (
        connect_postgres().await.table_named(&table),
        postgres_url(),
        table,
    )
}

/// A MariaDB service's pool on a table name nobody has made yet.
async fn mysql_without_tables() -> (MySqlLockProvider, String, String) {
    let table = unique_table_name("cli");
    (
        connect_mysql().await.table_named(&table),
        mysql_url(),
        table,
    )
}

/// An SQLite service's pool on a new file without tables.
async fn sqlite_without_tables() -> (SqliteLockProvider, String, String) {
    let file = sqlite_file(&unique_table_name("cli"));
    let url = format!("sqlite://{}", file.display());
    (open_sqlite(&file).await, url, DEFAULT_TABLE_NAME.to_owned())
}

/// The database file `name`.db in the test run's directory.
fn sqlite_file(name: &str) -> std::path::PathBuf {
    shedlock_test_support::sql::sqlite_file(env!("CARGO_TARGET_TMPDIR"), name)
}

/// `list` and `show` print the table and JSON they print on Redis.
async fn list_and_show_describe_the_locks<P: Service>((provider, url, table): (P, String, String)) {
    let held = lock(&provider, "nightly-report").await;
    provider
        .pause("maintenance")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    provider
        .set_capacity("exports", 3)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let counted = config("exports")
        .with_permits(2)
        .unwrap_or_else(|err| panic!("{err}"));
    let exporting = match provider.try_lock(&counted).await {
        Ok(Some(guard)) => guard,
        other => panic!("cannot take 2 permits of 'exports': {other:?}"),
    };
    take_and_release(&provider, "finished").await;

    let listed = succeeded(&run(&url, &table, &["list"]).await);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("TIME LEFT") && lines[0].contains("TERM"),
        "{listed}"
    );
    let row = |name: &str| row_of(&listed, name);
    let nightly = row("nightly-report");
    assert!(
        nightly.contains("exclusive") && nightly.contains("worker-7") && !nightly.contains(";id="),
        "{listed}"
    );
    // The PAUSED column, wherever it is.
    let paused_at = lines[0]
        .find("PAUSED")
        .unwrap_or_else(|| panic!("no PAUSED column:\n{listed}"));
    assert_eq!(
        row("maintenance").get(paused_at..paused_at + 3),
        Some("yes"),
        "{listed}"
    );
    assert_eq!(
        row("exports").get(paused_at..paused_at + 2),
        Some("no"),
        "{listed}"
    );
    assert!(row("exports").contains(" 3 "), "{listed}");
    assert_eq!(
        lines.len(),
        4,
        "a free lock without settings is listed:\n{listed}"
    );
    // Sorted by name, as on Redis.
    let names: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        ["exports", "maintenance", "nightly-report"],
        "{listed}"
    );

    let json = json_of(&succeeded(&run(&url, &table, &["--json", "list"]).await));
    let locks = json
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {json}"));
    assert_eq!(locks.len(), 3, "{json}");
    let nightly = &locks[2];
    assert_eq!(nightly["name"], "nightly-report");
    assert_eq!(nightly["permits_held"], 1);
    let holder = &nightly["holders"][0];
    assert_eq!(holder["locked_by"], "worker-7", "{json}");
    assert_eq!(holder["mode"], "exclusive");
    assert_eq!(
        holder["fencing_token"].as_u64(),
        Some(
            held.fencing_token()
                .await
                .unwrap_or_else(|err| panic!("{err}"))
        )
    );
    assert!(
        holder["lease_left_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 50_000 && ms <= 60_000)
    );
    assert!(holder["locked_at"].is_string(), "{json}");
    assert_eq!(locks[1]["paused"], true);
    assert_eq!(nightly["exclusive_waiters"], 0, "{json}");
    assert_eq!(locks[0]["capacity"], 3);
    // A counted holder, from the shared holders' table.
    assert_eq!(locks[0]["permits_held"], 2, "{json}");
    assert_eq!(locks[0]["holders"][0]["permits"], 2, "{json}");
    assert_eq!(locks[0]["holders"][0]["locked_by"], "worker-7", "{json}");

    let shown = succeeded(&run(&url, &table, &["show", "nightly-report"]).await);
    assert!(
        shown.contains(&format!(
            "table:     {table} (settings in {table}_settings)"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("exclusive: worker-7, locked at") && shown.contains("fencing token"),
        "{shown}"
    );
    assert!(shown.contains("waiting exclusive jobs: 0"), "{shown}");
    let free = succeeded(&run(&url, &table, &["show", "never-used"]).await);
    assert!(free.contains("none (free)"), "{free}");
    let free = json_of(&succeeded(
        &run(&url, &table, &["--json", "show", "never-used"]).await,
    ));
    assert_eq!(free["holders"], Value::Array(Vec::new()));
    assert_eq!(free["exclusive_waiters"], 0);
    held.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    exporting
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

/// Pause, resume, capacity and unlock change what the services see.
async fn changes_reach_the_services<P: Service>((provider, url, table): (P, String, String)) {
    let job = config("exports");
    let paused = succeeded(&run(&url, &table, &["--json", "pause", "exports"]).await);
    let paused = json_of(&paused);
    assert_eq!(
        (paused["action"].clone(), paused["paused"].clone()),
        ("paused".into(), true.into())
    );
    assert!(
        matches!(provider.try_lock(&job).await, Ok(None)),
        "a paused lock was taken"
    );
    let resumed = succeeded(&run(&url, &table, &["resume", "exports"]).await);
    assert!(resumed.contains("exports: resumed"), "{resumed}");
    let mut held = lock(&provider, "exports").await;

    succeeded(&run(&url, &table, &["capacity", "exports", "0"]).await);
    assert!(
        provider
            .lock_state("exports")
            .await
            .is_ok_and(|state| state.paused && state.is_locked())
    );

    let refused = run(&url, &table, &["unlock", "exports"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let unlocked = json_of(&succeeded(
        &run(&url, &table, &["--json", "unlock", "exports", "--force"]).await,
    ));
    assert_eq!(unlocked["released"], 1, "{unlocked}");
    assert!(matches!(
        held.extend(Duration::from_secs(60), Duration::ZERO).await,
        Ok(false)
    ));
    let again = succeeded(&run(&url, &table, &["unlock", "exports", "--force"]).await);
    assert!(again.contains("nobody held it"), "{again}");
    succeeded(&run(&url, &table, &["resume", "exports"]).await);
    assert!(matches!(provider.try_lock(&job).await, Ok(Some(_))));
}

/// `history NAME` prints the lock's last runs (the newest first), `show` its
/// last run (and its last tick, and the ticks missed) and `list` a LAST RUN
/// column, for a lock that is free; `prune` takes the runs and the tick of
/// the locks it prunes.
async fn history_show_and_list_give_the_last_runs<P: Service>(
    (provider, url, table): (P, String, String),
) {
    let executor = LockingTaskExecutor::new(provider);
    run_three_times(&executor, &config("nightly")).await;

    let (history, show) = assert_last_runs_shown(async |args| run(&url, &table, args).await).await;
    // On SQL, each run has its fencing token, the newest first.
    let runs = history.as_array().map(Vec::as_slice).unwrap_or_default();
    for run in runs {
        assert!(run["fencing_token"].as_u64().is_some(), "{run}");
    }
    let tokens: Vec<u64> = runs
        .iter()
        .filter_map(|run| run["fencing_token"].as_u64())
        .collect();
    assert!(
        tokens.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {history}"
    );
    assert_eq!(show["last_run"]["fencing_token"], runs[0]["fencing_token"]);
    // Ticks claimed and missed.
    run_ticks_with_a_gap(&executor, &config("ticking")).await;
    assert_ticks_shown(async |args| run(&url, &table, args).await).await;

    // Pruned, the lock's runs and its last tick go with its row.
    succeeded(&run(&url, &table, &["prune", "--unused-for", "0s"]).await);
    let show = json_of(&succeeded(
        &run(&url, &table, &["show", "ticking", "--json"]).await,
    ));
    assert_eq!(show["last_tick"], Value::Null, "{show}");
    let history = json_of(&succeeded(
        &run(&url, &table, &["history", "nightly", "--json"]).await,
    ));
    assert_eq!(history.as_array().map(Vec::len), Some(0), "{history}");
    let list = succeeded(&run(&url, &table, &["list"]).await);
    assert!(
        !list.lines().any(|line| line.starts_with("nightly")),
        "{list}"
    );
}

/// `list` reads the last runs of all its locks in one query, not one per
/// lock: counted as the requests that reach the server through a proxy.
async fn list_reads_last_runs_in_one_query<P: Service>(
    (provider, url, table): (P, String, String),
) {
    let executor = LockingTaskExecutor::new(provider);
    run_every_report(&executor, config).await;
    let proxy = FaultProxy::start_in_front_of(&url).await;

    let list = succeeded(&run(&proxy.route(&url), &table, &["list"]).await);
    let sent = proxy.forwarded_to_server();

    assert_every_report_listed_with_its_last_run(&list);
    // The connection's start and schema checks, the list and the last runs;
    // a read per lock would be 300 more.
    assert!(
        sent <= 60,
        "list of {REPORTS} locks sent {sent} requests to the server"
    );
}

/// `prune --unused-for` deletes the rows of locks unused since then, never a
/// held one's or a pause.
async fn prune_deletes_the_rows_of_unused_locks<P: Service>(
    (provider, url, table): (P, String, String),
) {
    take_and_release(&provider, "old").await;
    let held = lock(&provider, "held").await;
    provider
        .pause("paused")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    take_and_release(&provider, "recent").await;

    let pruned = succeeded(&run(&url, &table, &["prune", "--unused-for", "1s"]).await);
    assert!(
        pruned.contains("pruned 1 lock unused for 1s") && pruned.contains(&table),
        "{pruned}"
    );
    assert!(
        !provider.has_row("old").await,
        "the unused lock's row stayed"
    );
    for kept in ["held", "recent"] {
        assert!(provider.has_row(kept).await, "'{kept}' was pruned");
    }
    assert!(
        provider
            .lock_state("paused")
            .await
            .is_ok_and(|state| state.paused)
    );
    let pruned = json_of(&succeeded(
        &run(&url, &table, &["--json", "prune", "--unused-for", "0s"]).await,
    ));
    assert_eq!(pruned["pruned"], 1, "{pruned}");
    assert_eq!(pruned["action"], "pruned");
    assert!(provider.has_row("held").await, "a held lock was pruned");
    let bad = run(&url, &table, &["prune", "--unused-for", "soon"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    held.unlock().await.unwrap_or_else(|err| panic!("{err}"));
}

/// `--timeout` bounds each statement of the command, and a prune that
/// runs out of it is cancelled on the server: it fails (exit 1, saying to
/// give it more time), and no statement of it runs on there; given more
/// time, the prune goes through.
async fn prune_runs_within_the_timeout_and_leaves_nothing_running<P: Service>(
    (provider, url, table): (P, String, String),
) {
    take_and_release(&provider, "returning-job").await;
    provider.slow_down_deleting_runs().await;
    let hurry = ["--timeout", "300ms", "prune", "--unused-for", "0s"];
    let hurried = run(&url, &table, &hurry).await;
    assert_exited_saying(&hurry, &hurried, 1, "--timeout");
    assert_eq!(
        provider.running_statements().await,
        0,
        "the prune the command gave up on still runs on the server: {}",
        stderr(&hurried)
    );
    assert!(
        provider.has_row("returning-job").await,
        "the failed prune deleted a row"
    );
    take_and_release(&provider, "returning-job").await;

    provider.stop_slowing_down().await;
    let pruned = succeeded(
        &run(
            &url,
            &table,
            &["--timeout", "30s", "prune", "--unused-for", "0s"],
        )
        .await,
    );
    assert!(pruned.contains("pruned 1 lock"), "{pruned}");
    let bad = run(&url, &table, &["--timeout", "soon", "list"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// An `--unused-for` beyond the largest accepted is a usage mistake (exit
/// 2) whose message gives the largest (PostgreSQL answered "interval out
/// of range", exit 1).
async fn an_unused_for_beyond_the_largest_is_a_usage_mistake<P: Service>(
    (_provider, url, table): (P, String, String),
) {
    let beyond = ["prune", "--unused-for", "300000y"];
    let output = run(&url, &table, &beyond).await;
    assert_exited_saying(&beyond, &output, 2, "at most 1000years");
    succeeded(&run(&url, &table, &["prune", "--unused-for", "1000y"]).await);
}

/// `unlock --force` works on a table made by ShedLock for Java alone (its
/// four columns, no companion table): the row's lease ends.
async fn unlock_works_on_the_table_of_shedlock_for_java_alone<P: Service>(
    (provider, url, table): (P, String, String),
) {
    provider.java_table_holding("java-job").await;
    assert!(provider.is_held("java-job").await);
    let unlocked = json_of(&succeeded(
        &run(&url, &table, &["--json", "unlock", "java-job", "--force"]).await,
    ));
    assert_eq!(unlocked["released"], 1, "{unlocked}");
    assert!(
        !provider.is_held("java-job").await,
        "the lease of ShedLock for Java's row did not end"
    );
    let again = succeeded(&run(&url, &table, &["unlock", "java-job", "--force"]).await);
    assert!(again.contains("nobody held it"), "{again}");
}

/// Names the library refuses are usage errors (exit 2), for every command
/// taking a name.
async fn names_the_library_refuses_exit_2<P: Service>(
    (_provider, url, table): (P, String, String),
) {
    let long = "n".repeat(65);
    for name in ["", "   ", long.as_str()] {
        for args in [
            &["show", name][..],
            &["pause", name][..],
            &["resume", name][..],
            &["capacity", name, "2"][..],
            &["unlock", name, "--force"][..],
        ] {
            let output = run(&url, &table, args).await;
            assert_exited_saying(args, &output, 2, "lock name");
        }
    }
    let too_big = ["capacity", "exports", "1000001"];
    let output = run(&url, &table, &too_big).await;
    assert_exited_saying(&too_big, &output, 2, "at most 1000000");
}

/// Each `$case` on each of `$database`s: a module a case, a test a database
/// in it; `super::$database()` gives the service.
macro_rules! sql_cli_cases {
    ($databases:tt: $($case:ident),+ $(,)?) => {
        $(sql_cli_cases!(@case $case $databases);)+
    };
    (@case $case:ident [$($database:ident),*]) => {
        mod $case {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $database() {
                    super::$case(super::$database().await).await;
                }
            )*
        }
    };
}

sql_cli_cases!([postgres, mysql, sqlite]:
    list_and_show_describe_the_locks,
    changes_reach_the_services,
    history_show_and_list_give_the_last_runs,
    prune_deletes_the_rows_of_unused_locks,
    names_the_library_refuses_exit_2,
    an_unused_for_beyond_the_largest_is_a_usage_mistake,
);
sql_cli_cases!([postgres, mysql]:
    prune_runs_within_the_timeout_and_leaves_nothing_running,
    list_reads_last_runs_in_one_query,
);
mod on_java_table {
    use super::{mysql_without_tables as mysql, postgres_without_tables as postgres};
    use super::{
        sqlite_without_tables as sqlite, unlock_works_on_the_table_of_shedlock_for_java_alone,
    };

    sql_cli_cases!([postgres, mysql, sqlite]: unlock_works_on_the_table_of_shedlock_for_java_alone);
}

#[test]
fn an_unreachable_database_exits_1_without_printing_the_password() {
    let port = free_port();
    for url in [
        format!("postgres://app:s3cret-pass@127.0.0.1:{port}/app"),
        format!("mysql://app:s3cret-pass@127.0.0.1:{port}/app"),
    ] {
        assert_unreachable_without_the_password(&shedlock(&url, "shedlock", &["list"]));
    }
}

#[test]
fn a_missing_sqlite_file_is_not_created() {
    let file = sqlite_file(&unique_table_name("missing"));
    let output = shedlock(
        &format!("sqlite://{}", file.display()),
        "shedlock",
        &["list"],
    );
    assert_exited_saying(&["list"], &output, 1, "no database file");
    assert!(!file.exists(), "the command created {}", file.display());
}

#[test]
fn the_store_comes_from_the_environment_and_flags_win() {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|err| panic!("{err}"));
    let (_provider, url, table) = runtime.block_on(sqlite());
    let from_env = Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .env("SHEDLOCK_STORE_URL", &url)
        .env("SHEDLOCK_REDIS_URL", "redis://127.0.0.1:1")
        .args(["--table", &table, "show", "anything"])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        succeeded(&from_env).contains("table:     shedlock"),
        "SHEDLOCK_STORE_URL must win over SHEDLOCK_REDIS_URL"
    );
    // --redis on the command line wins over SHEDLOCK_STORE_URL: the Redis
    // on port 1 refuses, exit 1.
    let flag_wins = Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .env("SHEDLOCK_STORE_URL", &url)
        .args(["--redis", "redis://127.0.0.1:1", "show", "anything"])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(flag_wins.status.code(), Some(1), "{}", stderr(&flag_wins));
    let both = Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .args(["--store", &url, "--redis", "redis://127.0.0.1:1", "list"])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let unknown = shedlock("mongodb://admin:s3cret@db/x", "shedlock", &["list"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(!stderr(&unknown).contains("s3cret"), "{}", stderr(&unknown));
}

/// The command reaches a PostgreSQL that takes TLS connections only, its
/// certificate checked against the CA the URL names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_reaches_a_database_over_tls() {
    let certificates = shedlock_test_support::tls::TestCertificates::make();
    let server = shedlock_test_support::sql::PostgresServer::start_tls(&certificates);
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(),
        certificates.ca().display()
    );
    let table = unique_table_name("cli_tls");
    let service = PostgresLockProvider::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .on_table(&table)
        .await;
    let _held = lock(&service, "exports").await;

    let listed = json_of(&succeeded(&run(&url, &table, &["--json", "list"]).await));
    assert_eq!(listed[0]["name"], "exports", "{listed}");

    let plain = run(
        &format!("{}?sslmode=disable", server.url()),
        &table,
        &["list"],
    )
    .await;
    assert_exited_saying(&["list"], &plain, 1, "TLS");
}
