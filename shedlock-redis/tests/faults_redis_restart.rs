//! The lock server dies and comes back (empty, on the same port) while three
//! processes run a ticking locked job: calls during the outage fail with an
//! error and none hangs, the providers recover by themselves, and no tick
//! runs twice.
//!
//! Runs are recorded in a file (Redis loses everything on restart): each
//! worker appends `tick pid epoch_ms` lines with `O_APPEND`. The workers are
//! this test binary again, running only `ticking_worker`.

#[path = "support/workers.rs"]
mod workers;

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::time::Duration;

use shedlock_core::{LockConfiguration, LockingTaskExecutor};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::now_ms;
use shedlock_test_support::ticks::{
    Call, CallTally, Ticks, finish_workers, spawn_workers, until_tick_ends,
};
use workers::{new_records_file, owned_server};

const WORKERS: usize = 3;
/// Ticks fall on multiples of this period of the wall clock.
const PERIOD_MS: u64 = 400;
const TICKS: u64 = 16;
/// A worker that wakes this late skips the tick (a scheduler's `MissedTickBehavior::Skip`).
const MAX_LATE: Duration = Duration::from_millis(150);
/// When the server is killed, after the first tick.
const KILL_AFTER_MS: u64 = 1_800;
const DOWNTIME: Duration = Duration::from_secs(1);
/// No call may take longer: the provider's response timeout (2 s) plus its
/// connection timeout (2 s), with a margin.
const MAX_CALL: Duration = Duration::from_secs(5);
/// The providers must work again this soon after the server is back (plus
/// one tick period: workers only call on ticks).
const RECOVERY_BOUND_MS: u64 = 2_000 + PERIOD_MS;

const URL_ENV: &str = "SHEDLOCK_FAULTS_RESTART_URL";
const TICKS_ENV: &str = "SHEDLOCK_FAULTS_RESTART_TICKS";
const RUNS_FILE_ENV: &str = "SHEDLOCK_FAULTS_RESTART_RUNS";
const WORKER_ENV: &str = "SHEDLOCK_FAULTS_RESTART_WORKER";

#[tokio::test]
async fn a_redis_restart_under_load_fails_calls_briefly_then_recovers_without_double_runs() {
    let mut server = owned_server();
    let (runs_file, runs_path) = new_records_file("restart-runs");

    let ticks = Ticks::after(Duration::from_secs(1), PERIOD_MS, TICKS);
    let workers = spawn_workers(
        "ticking_worker",
        WORKERS,
        Some(WORKER_ENV),
        &[
            (RUNS_FILE_ENV, &runs_path),
            (URL_ENV, server.url()),
            (TICKS_ENV, &ticks.to_string()),
        ],
    );

    // The outage, timed on the wall clock the workers share.
    let start_ms = ticks.first * PERIOD_MS;
    let kill_at = start_ms + KILL_AFTER_MS;
    tokio::time::sleep(Duration::from_millis(kill_at.saturating_sub(now_ms()))).await;
    let killing = now_ms();
    server.kill();
    let down = now_ms();
    tokio::time::sleep(DOWNTIME).await;
    let restarting = now_ms();
    server.restart();
    let back = now_ms();
    println!(
        "redis restart: killed at +{} ms (down after {} ms), restarted at +{} ms, answering PING at +{} ms",
        killing - start_ms,
        down - killing,
        restarting - start_ms,
        back - start_ms
    );

    let finish_by = until_tick_ends(ticks.last, PERIOD_MS, Duration::from_secs(10));
    let outputs = finish_workers(workers, finish_by, &["worker "]).await;
    let calls = Call::reported(&outputs);
    let runs = std::fs::read_to_string(&runs_file).unwrap();
    let _ = std::fs::remove_file(&runs_file);

    // No tick ran twice.
    let mut by_tick: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for line in runs.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [tick, pid, at_ms] = fields[..] else {
            panic!("malformed run line {line:?} in {runs:?}");
        };
        by_tick
            .entry(tick.parse().unwrap())
            .or_default()
            .push((pid.to_owned(), at_ms.parse().unwrap()));
    }
    println!(
        "runs (tick: pids): {:?}",
        by_tick
            .iter()
            .map(|(tick, runs)| (tick, runs.iter().map(|(pid, _)| pid).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    let twice: Vec<_> = by_tick.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(twice.is_empty(), "ticks ran more than once: {twice:?}");

    // Calls while the server was down failed; none hung.
    let during_outage: Vec<&Call> = calls
        .iter()
        .filter(|call| call.start_ms >= down && call.end_ms <= restarting)
        .collect();
    assert!(
        !during_outage.is_empty(),
        "no call fell inside the outage: {calls:?}"
    );
    let succeeded: Vec<_> = during_outage
        .iter()
        .filter(|call| call.outcome != "err")
        .collect();
    assert!(
        succeeded.is_empty(),
        "calls succeeded while the server was down: {succeeded:?}"
    );
    for call in &calls {
        if call.end_ms >= down && call.start_ms <= back {
            println!(
                "redis restart: worker {} tick {} started at +{} ms of the outage: {} after {} ms",
                call.worker,
                call.tick,
                call.start_ms as i64 - down as i64,
                call.outcome,
                call.took_ms()
            );
        }
    }
    let errors = calls.iter().filter(|call| call.outcome == "err").count();
    let slowest_ms = Call::slowest_under(&calls, MAX_CALL).took_ms();
    println!(
        "redis restart: {} calls, {errors} errors ({} calls fully inside the outage), \
         slowest call {slowest_ms} ms",
        calls.len(),
        during_outage.len()
    );

    // Each provider recovered by itself, soon after the server came back.
    for worker in 0..WORKERS {
        let recovered = calls
            .iter()
            .filter(|call| call.worker == worker && call.end_ms > back && call.outcome != "err")
            .map(|call| call.end_ms)
            .min();
        let Some(recovered) = recovered else {
            panic!("worker {worker} never had a successful call after the restart: {calls:?}");
        };
        println!(
            "redis restart: worker {worker}'s first successful call after the restart ended {} ms \
             after the server answered again",
            recovered - back
        );
        assert!(
            recovered - back <= RECOVERY_BOUND_MS,
            "worker {worker} recovered only {} ms after the restart",
            recovered - back
        );
    }
    let first_run_after = by_tick
        .values()
        .flatten()
        .map(|(_, at_ms)| *at_ms)
        .filter(|at_ms| *at_ms > back)
        .min();
    let Some(first_run_after) = first_run_after else {
        panic!("no tick ran after the restart: {by_tick:?}");
    };
    println!(
        "redis restart: first run after the restart {} ms after the server answered again",
        first_run_after - back
    );
    assert!(first_run_after - back <= RECOVERY_BOUND_MS);
    assert!(
        by_tick
            .values()
            .flatten()
            .any(|(_, at_ms)| *at_ms < killing),
        "no tick ran before the outage: {by_tick:?}"
    );
}

/// One worker process: runs the locked job on every tick of `TICKS_ENV` and
/// reports each call. Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "a worker process of a_redis_restart_under_load_fails_calls_briefly_then_recovers_without_double_runs"]
async fn ticking_worker() -> Result<(), Box<dyn Error>> {
    // Only the test sets the ticks; without them this is a plain run.
    let Ok(Ticks { first, last }) = Ticks::from_env(TICKS_ENV) else {
        return Ok(());
    };
    let url = std::env::var(URL_ENV)?;
    let runs_file = std::env::var(RUNS_FILE_ENV)?;
    let worker = std::env::var(WORKER_ENV)?;
    let pid = std::process::id();

    let executor = LockingTaskExecutor::new(
        RedisLockProvider::connect(&url)
            .await?
            .with_locked_by(format!("worker-{worker}")),
    );
    let config = LockConfiguration::new(
        "restart-tick",
        Duration::from_secs(5),
        Duration::from_millis(300),
    )?;

    let mut tally = CallTally::new(&worker);
    for tick in first..=last {
        if !tally.on_time(tick * PERIOD_MS, MAX_LATE).await {
            continue;
        }
        let run = executor.execute(&config, async {
            // One write of one short line with O_APPEND: lines never interleave.
            let mut file = std::fs::OpenOptions::new().append(true).open(&runs_file)?;
            file.write_all(format!("{tick} {pid} {}\n", now_ms()).as_bytes())
        });
        if let Some(written) = tally.call(tick, run).await {
            written?;
        }
    }
    tally.print_summary();
    Ok(())
}
