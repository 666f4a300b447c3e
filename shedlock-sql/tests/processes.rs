//! Four OS processes run the same locked job against one PostgreSQL table,
//! then against one SQLite file, on ticks aligned to the wall clock: every
//! tick runs in exactly one of them.
//!
//! The processes are this test binary again, running only `worker_process`
//! (an ignored test that does nothing unless `WORKER_DATABASE_ENV` is set).
//! Each prints the ticks it ran; the test collects them.

use std::time::Duration;

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_sql::{DEFAULT_TABLE_NAME, PostgresLockProvider, SqliteLockProvider};
use shedlock_test_support::sql::{postgres, postgres_url, sqlite, sqlite_file, unique_table_name};
use shedlock_test_support::ticks::{TickRuns, finish_workers, spawn_workers, until_tick_ends};
use shedlock_test_support::{Worker, now_ms, sleep_until_ms};

const WORKERS: usize = 4;
/// Ticks fall on multiples of this period of the wall clock, which all
/// processes on one machine share.
const PERIOD_MS: u64 = 500;
const TICKS: u64 = 10;
/// A worker that wakes this late skips the tick, as a scheduler with
/// `MissedTickBehavior::Skip` would: `lock_at_least_for` (300 ms) covers the
/// workers that fire within this window of each other, not a stalled one.
const MAX_LATE_MS: u64 = 150;

const WORKER_DATABASE_ENV: &str = "SHEDLOCK_SQL_PROCESSES_DATABASE";
const WORKER_TABLE_ENV: &str = "SHEDLOCK_SQL_PROCESSES_TABLE";
const WORKER_TICKS_ENV: &str = "SHEDLOCK_SQL_PROCESSES_TICKS";

#[tokio::test]
async fn four_processes_on_postgres_run_every_tick_exactly_once() {
    let table = unique_table_name("processes");
    postgres(&table).await;
    run_workers("postgres", &table).await;
}

#[tokio::test]
async fn four_processes_on_one_sqlite_file_run_every_tick_exactly_once() {
    let table = unique_table_name("processes");
    let file = sqlite_file(env!("CARGO_TARGET_TMPDIR"), &table);
    sqlite(&file, DEFAULT_TABLE_NAME).await;
    run_workers(&format!("sqlite:{}", file.display()), DEFAULT_TABLE_NAME).await;
}

async fn run_workers(database: &str, table: &str) {
    // Leave the workers a second to start before the first tick.
    let first = now_ms() / PERIOD_MS + 1000 / PERIOD_MS + 1;
    let last = first + TICKS - 1;
    let ticks = format!("{first}-{last}");
    let envs = [
        (WORKER_DATABASE_ENV, database),
        (WORKER_TABLE_ENV, table),
        (WORKER_TICKS_ENV, &ticks),
    ];
    let workers = spawn_workers("worker_process", WORKERS, None, &envs);
    let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
    let time_left = until_tick_ends(last, PERIOD_MS, Duration::from_secs(10));
    let outputs = finish_workers(workers, time_left, &["worker "]).await;
    let mut runs = TickRuns::default();
    for (pid, output) in pids.into_iter().zip(&outputs) {
        for line in output.lines() {
            // Not `strip_prefix`: the first may follow the harness's "test worker_process ... ".
            if let Some((_, tick)) = line.split_once("ran tick ") {
                let tick = tick
                    .trim()
                    .parse()
                    .unwrap_or_else(|err| panic!("{line:?}: {err}"));
                runs.record(tick, pid.to_string());
            }
        }
    }
    println!("{database}: runs (tick: pids): {runs}");
    runs.assert_each_ran_once(first, last);
}

/// One worker process: runs the job on every tick of `WORKER_TICKS_ENV`.
/// Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "a worker process of the four_processes_* tests"]
async fn worker_process() -> anyhow::Result<()> {
    let Ok(database) = std::env::var(WORKER_DATABASE_ENV) else {
        return Ok(());
    };
    let table = std::env::var(WORKER_TABLE_ENV)?;
    let ticks = std::env::var(WORKER_TICKS_ENV)?;
    let (first, last) = ticks
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("{WORKER_TICKS_ENV}={ticks:?} is not first-last"))?;
    let (first, last): (u64, u64) = (first.parse()?, last.parse()?);
    let locks: Box<dyn LockProvider> = match database.strip_prefix("sqlite:") {
        Some(file) => Box::new(
            SqliteLockProvider::open(file)
                .await?
                .with_table_name(&table)?,
        ),
        None => Box::new(
            PostgresLockProvider::connect(&postgres_url())
                .await?
                .with_table_name(&table)?,
        ),
    };
    let executor = LockingTaskExecutor::new(locks);
    let config = LockConfiguration::new(
        "processes-tick",
        Duration::from_secs(5),
        Duration::from_millis(300),
    )?;

    let (mut ran, mut skipped, mut late) = (Vec::new(), 0, 0);
    for tick in first..=last {
        if sleep_until_ms(tick * PERIOD_MS).await > Duration::from_millis(MAX_LATE_MS) {
            late += 1;
            continue;
        }
        let run = executor
            .execute(&config, async {
                println!("ran tick {tick}");
            })
            .await?;
        match run {
            Some(()) => ran.push(tick),
            None => skipped += 1,
        }
    }
    println!(
        "worker (pid {}) on {database}: ran ticks {ran:?}, skipped {skipped}, woke too late {late}",
        std::process::id()
    );
    Ok(())
}
