//! `create_table_if_missing` run by four OS processes at the same instant
//! (replicas starting together), on PostgreSQL, MariaDB and one SQLite file:
//! every process succeeds, and both tables are there and work.
//!
//! The processes are this test binary again, running only
//! `create_tables_process` (an ignored test that does nothing unless
//! `DATABASE_ENV` is set).

use std::path::PathBuf;
use std::time::Duration;

use shedlock_core::{LockAdmin, LockConfiguration, LockProvider};
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};
use shedlock_test_support::sql::{mysql_url, postgres_url, unique_table_name};
use shedlock_test_support::ticks::{finish_workers, spawn_workers};
use shedlock_test_support::{now_ms, sleep_until_ms};

const WORKERS: usize = 4;

const DATABASE_ENV: &str = "SHEDLOCK_SQL_CREATE_DATABASE";
const TABLE_ENV: &str = "SHEDLOCK_SQL_CREATE_TABLE";
const START_ENV: &str = "SHEDLOCK_SQL_CREATE_START_MS";

#[tokio::test]
async fn four_processes_create_the_tables_at_once_on_postgres() {
    create_the_tables_at_once("postgres", &unique_table_name("create")).await;
}

#[tokio::test]
async fn four_processes_create_the_tables_at_once_on_mysql() {
    create_the_tables_at_once("mysql", &unique_table_name("create")).await;
}

#[tokio::test]
async fn four_processes_create_the_tables_at_once_on_one_sqlite_file() {
    let table = unique_table_name("create");
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{table}.db"));
    create_the_tables_at_once(&format!("sqlite:{}", file.display()), &table).await;
}

/// The workers create `table` on `database` at once; then the tables work.
async fn create_the_tables_at_once(database: &str, table: &str) {
    run_workers(database, table).await;
    let provider = open(database, table)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_tables_work(provider.as_ref()).await;
}

/// A provider and operator on `table` of `database` (`postgres`, `mysql`
/// or `sqlite:<file>`), without creating anything.
trait AdminProvider: LockProvider + LockAdmin {}
impl<P: LockProvider + LockAdmin> AdminProvider for P {}

async fn open(database: &str, table: &str) -> anyhow::Result<Box<dyn AdminProvider>> {
    Ok(match database {
        "postgres" => Box::new(
            PostgresLockProvider::connect(&postgres_url())
                .await?
                .with_table_name(table)?,
        ),
        "mysql" => Box::new(
            MySqlLockProvider::connect(&mysql_url())
                .await?
                .with_table_name(table)?,
        ),
        other => {
            let file = other
                .strip_prefix("sqlite:")
                .ok_or_else(|| anyhow::anyhow!("unknown database {other:?}"))?;
            Box::new(
                SqliteLockProvider::open(file)
                    .await?
                    .with_table_name(table)?,
            )
        }
    })
}

/// The lock table and its companion exist: a pause is stored and honoured.
async fn assert_tables_work(provider: &dyn AdminProvider) {
    let job = LockConfiguration::new("created", Duration::from_secs(30), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"));
    provider
        .pause("created")
        .await
        .unwrap_or_else(|err| panic!("the settings table does not work: {err}"));
    assert!(matches!(provider.try_lock(&job).await, Ok(None)));
    provider
        .resume("created")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(matches!(provider.try_lock(&job).await, Ok(Some(_))));
}

async fn run_workers(database: &str, table: &str) {
    // Every worker creates the tables at this instant of the wall clock,
    // which all processes of the machine share.
    let start = (now_ms() + 1500).to_string();
    let envs = [
        (DATABASE_ENV, database),
        (TABLE_ENV, table),
        (START_ENV, &start),
    ];
    let workers = spawn_workers("create_tables_process", WORKERS, None, &envs);
    for output in finish_workers(workers, Duration::from_secs(30), &[]).await {
        assert!(
            output.contains("tables created"),
            "a worker did not create the tables:\n{output}"
        );
    }
}

/// One worker process: connects, waits for the common instant, then runs
/// `create_table_if_missing`. Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "a worker process of the four_processes_create_* tests"]
async fn create_tables_process() -> anyhow::Result<()> {
    let Ok(database) = std::env::var(DATABASE_ENV) else {
        return Ok(());
    };
    let table = std::env::var(TABLE_ENV)?;
    let start: u64 = std::env::var(START_ENV)?.parse()?;
    let created = match database.strip_prefix("sqlite:") {
        Some(file) => {
            let provider = SqliteLockProvider::open(file)
                .await?
                .with_table_name(&table)?;
            sleep_until_ms(start).await;
            provider.create_table_if_missing().await
        }
        None if database == "postgres" => {
            let provider = PostgresLockProvider::connect(&postgres_url())
                .await?
                .with_table_name(&table)?;
            sleep_until_ms(start).await;
            provider.create_table_if_missing().await
        }
        None => {
            let provider = MySqlLockProvider::connect(&mysql_url())
                .await?
                .with_table_name(&table)?;
            sleep_until_ms(start).await;
            provider.create_table_if_missing().await
        }
    };
    created?;
    println!("tables created by pid {}", std::process::id());
    Ok(())
}
