//! Four OS processes mix shared (counted) and exclusive jobs on one lock,
//! against one PostgreSQL table, one MySQL/MariaDB table and one SQLite
//! file: each process runs a task of counted jobs (1 or 2 permits of a
//! capacity of 3) and a task of exclusive jobs, all waiting for the lock.
//! Every run prints when it started and ended by the wall clock, which the
//! processes of one machine share; the test then checks that no exclusive
//! run overlapped any other run, that the permits of overlapping runs never
//! exceeded the capacity, and that shared runs did overlap (they share).
//!
//! The processes are this test binary again, running only `worker_process`
//! (an ignored test that does nothing unless `WORKER_DATABASE_ENV` is set).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_test_support::sql::unique_table_name;
use shedlock_test_support::ticks::{finish_workers, spawn_workers};

mod support;

const WORKERS: usize = 4;
const CAPACITY: u32 = 3;
/// How long each worker keeps running jobs.
const RUN_FOR: Duration = Duration::from_secs(4);
/// How long one job's body runs.
const BODY: Duration = Duration::from_millis(15);

/// How long each process's exclusive task waits between its jobs.
const EXCLUSIVE_PAUSE: Duration = Duration::from_millis(150);

const WORKER_DATABASE_ENV: &str = "SHEDLOCK_SQL_KINDS_PROCESSES_DATABASE";
const WORKER_TABLE_ENV: &str = "SHEDLOCK_SQL_KINDS_PROCESSES_TABLE";

#[tokio::test]
async fn four_processes_on_postgres_mix_shared_and_exclusive_jobs_safely() {
    let table = unique_table_name("kinds_processes");
    support::postgres(&table).await;
    run_workers("postgres", &table).await;
}

#[tokio::test]
async fn four_processes_on_mysql_mix_shared_and_exclusive_jobs_safely() {
    let table = unique_table_name("kinds_processes");
    support::mysql(&table).await;
    run_workers("mysql", &table).await;
}

#[tokio::test]
async fn four_processes_on_one_sqlite_file_mix_shared_and_exclusive_jobs_safely() {
    let file = unique_table_name("kinds_processes");
    support::sqlite(&file).await;
    run_workers(&format!("sqlite:{file}"), shedlock_sql::DEFAULT_TABLE_NAME).await;
}

/// One run: its permits (0: exclusive) and its start and end, in
/// microseconds since 1970.
#[derive(Debug, Clone, Copy)]
struct Run {
    permits: u32,
    start: u64,
    end: u64,
}

async fn run_workers(database: &str, table: &str) {
    let envs = [(WORKER_DATABASE_ENV, database), (WORKER_TABLE_ENV, table)];
    let workers = spawn_workers("worker_process", WORKERS, None, &envs);
    let outputs = finish_workers(workers, RUN_FOR + Duration::from_secs(30), &["worker "]).await;
    let mut runs = Vec::new();
    for output in &outputs {
        for line in output.lines() {
            // Not `strip_prefix`: the first may follow the harness's "test worker_process ... ".
            if let Some((_, run)) = line.split_once("run ") {
                let fields: Vec<u64> = run
                    .split_whitespace()
                    .map(|field| {
                        field
                            .parse()
                            .unwrap_or_else(|err| panic!("{line:?}: {err}"))
                    })
                    .collect();
                let [permits, start, end] = fields[..] else {
                    panic!("{line:?} is not 'run PERMITS START END'");
                };
                let permits = u32::try_from(permits).unwrap_or_else(|err| panic!("{err}"));
                runs.push(Run {
                    permits,
                    start,
                    end,
                });
            }
        }
    }
    let exclusive = runs.iter().filter(|run| run.permits == 0).count();
    let shared = runs.len() - exclusive;
    let peak = check_runs(&runs);
    println!(
        "{database}: {exclusive} exclusive and {shared} shared runs, at most {peak} permits at once"
    );
    assert!(
        exclusive >= WORKERS && shared >= 2 * WORKERS,
        "too few runs to show anything: {exclusive} exclusive, {shared} shared"
    );
    assert!(
        peak >= 2,
        "shared runs never overlapped: shared holders did not share"
    );
}

/// Fails the test if an exclusive run overlapped another run, or the
/// permits of overlapping runs exceeded the capacity; the most permits held
/// at once.
fn check_runs(runs: &[Run]) -> u32 {
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let overlap = a.start < b.end && b.start < a.end;
            assert!(
                !(overlap && (a.permits == 0 || b.permits == 0)),
                "an exclusive run overlapped another: {a:?} and {b:?}"
            );
        }
    }
    // Sweep the shared runs' starts and ends in time order (ends first at a tie).
    let mut events: Vec<(u64, i64)> = runs
        .iter()
        .filter(|run| run.permits > 0)
        .flat_map(|run| {
            let permits = i64::from(run.permits);
            [(run.start, permits), (run.end, -permits)]
        })
        .collect();
    events.sort_by_key(|&(at, change)| (at, change));
    let (mut held, mut peak) = (0i64, 0i64);
    for (at, change) in events {
        held += change;
        assert!(
            held <= i64::from(CAPACITY),
            "{held} permits held at {at} µs, above the capacity {CAPACITY}"
        );
        peak = peak.max(held);
    }
    u32::try_from(peak).unwrap_or(0)
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Runs jobs of `configs` in turn (0 permits: exclusive) until `until`,
/// each waiting up to 2 s, with `pause` after each; how many ran.
async fn jobs<P: LockProvider>(
    executor: &LockingTaskExecutor<P>,
    configs: &[(u32, LockConfiguration)],
    pause: Duration,
    until: Instant,
) -> anyhow::Result<usize> {
    let mut ran = 0;
    for (permits, config) in configs.iter().cycle() {
        if Instant::now() >= until {
            break;
        }
        let run = executor
            .execute_waiting(config, Duration::from_secs(2), async {
                let start = micros_now();
                tokio::time::sleep(BODY).await;
                println!("run {permits} {start} {}", micros_now());
            })
            .await?;
        ran += usize::from(run.is_some());
        tokio::time::sleep(pause).await;
    }
    Ok(ran)
}

/// One worker process: a task of counted jobs and one of exclusive jobs
/// on the lock `kinds-processes`, for `RUN_FOR`. Does nothing when run as a
/// plain (ignored) test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of the four_processes_* tests"]
async fn worker_process() -> anyhow::Result<()> {
    let Ok(database) = std::env::var(WORKER_DATABASE_ENV) else {
        return Ok(());
    };
    let table = std::env::var(WORKER_TABLE_ENV)?;
    // The tables exist already: the support functions find them.
    let locks: Box<dyn LockProvider> = match database.strip_prefix("sqlite:") {
        Some(file) => Box::new(support::sqlite(file).await),
        None if database == "mysql" => Box::new(support::mysql(&table).await),
        None => Box::new(support::postgres(&table).await),
    };
    let executor = LockingTaskExecutor::new(locks);
    let base = LockConfiguration::new("kinds-processes", Duration::from_secs(10), Duration::ZERO)?;
    let counted = |permits| -> anyhow::Result<(u32, LockConfiguration)> {
        Ok((
            permits,
            base.clone()
                .with_permits(permits)?
                .with_capacity(CAPACITY)?,
        ))
    };
    let shared = [counted(1)?, counted(2)?, counted(1)?];
    let exclusive = [(0, base.clone())];
    let until = Instant::now() + RUN_FOR;
    // Exclusive waiters go before new shared holders: exclusive jobs back
    // to back from four processes would keep shared ones out all along.
    let (shared_ran, exclusive_ran) = tokio::try_join!(
        jobs(&executor, &shared, Duration::ZERO, until),
        jobs(&executor, &exclusive, EXCLUSIVE_PAUSE, until)
    )?;
    println!(
        "worker (pid {}) on {database}: {shared_ran} shared and {exclusive_ran} exclusive runs",
        std::process::id()
    );
    Ok(())
}
