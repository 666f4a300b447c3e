//! Four OS processes run the same locked job against one Redis, on ticks
//! aligned to the wall clock: every tick runs in exactly one of them.
//!
//! The processes are this test binary again, running only `worker_process`
//! (an ignored test that does nothing unless `WORKER_URL_ENV` is set).

use std::time::Duration;

use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use shedlock::redis::RedisLockProvider;
use shedlock::scheduler_lock;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sleep_until_ms;
use shedlock_test_support::ticks::{
    TickRuns, Ticks, finish_workers, spawn_workers, until_tick_ends,
};

const WORKERS: usize = 4;
/// Ticks fall on multiples of this period of the wall clock, which all
/// processes on one machine share.
const PERIOD_MS: u64 = 500;
const TICKS: u64 = 10;
/// A worker that wakes this late skips the tick, as a scheduler with
/// `MissedTickBehavior::Skip` would: `lock_at_least_for` (300 ms) covers the
/// workers that fire within this window of each other, not a stalled one.
const MAX_LATE: Duration = Duration::from_millis(150);
/// The Redis list every run is pushed to, as `tick:pid`.
const RUNS: &str = "runs";

const WORKER_URL_ENV: &str = "SHEDLOCK_PROCESSES_REDIS_URL";
const WORKER_TICKS_ENV: &str = "SHEDLOCK_PROCESSES_TICKS";
const WORKER_ID_ENV: &str = "SHEDLOCK_PROCESSES_WORKER";

/// The job: record which process ran `tick`. The lock is held at least 300 ms
/// from its acquisition, so processes whose timers fire a few ms later skip the tick.
#[scheduler_lock(
    name = "processes-tick",
    lock_at_most_for = "5s",
    lock_at_least_for = "300ms",
    provider = locks
)]
async fn record_tick(
    locks: &RedisLockProvider,
    mut runs: MultiplexedConnection,
    tick: u64,
) -> redis::RedisResult<usize> {
    runs.rpush(RUNS, format!("{tick}:{}", std::process::id()))
        .await
}

#[tokio::test]
async fn four_processes_run_every_tick_exactly_once() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let ticks = Ticks::after(Duration::from_secs(1), PERIOD_MS, TICKS);
    let Ticks { first, last } = ticks;
    let workers = spawn_workers(
        "worker_process",
        WORKERS,
        Some(WORKER_ID_ENV),
        &[
            (WORKER_URL_ENV, server.url()),
            (WORKER_TICKS_ENV, &ticks.to_string()),
        ],
    );
    // Killed (and reported) if one has not finished by the end of the ticks.
    let time_left = until_tick_ends(last, PERIOD_MS, Duration::from_secs(10));
    finish_workers(workers, time_left, &["worker "]).await;

    let mut connection = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let runs = connection.lrange(RUNS, 0, -1).await?;
    let mut by_tick = TickRuns::default();
    for run in &runs {
        let (tick, pid) = run
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("malformed run {run:?}"))?;
        by_tick.record(tick.parse()?, pid);
    }
    println!("runs (tick: pids): {by_tick}");
    by_tick.assert_each_ran_once(first, last);
    Ok(())
}

/// One worker process: runs `record_tick` on every tick of `WORKER_TICKS_ENV`.
/// Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "a worker process of four_processes_run_every_tick_exactly_once"]
async fn worker_process() -> anyhow::Result<()> {
    let Ok(url) = std::env::var(WORKER_URL_ENV) else {
        return Ok(());
    };
    let Ticks { first, last } = Ticks::from_env(WORKER_TICKS_ENV).map_err(anyhow::Error::msg)?;
    let worker = std::env::var(WORKER_ID_ENV).unwrap_or_default();

    let locks = RedisLockProvider::connect(&url)
        .await?
        .with_locked_by(format!("worker-{worker}"));
    let runs = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    let (mut ran, mut skipped, mut late) = (Vec::new(), 0, 0);
    for tick in first..=last {
        if sleep_until_ms(tick * PERIOD_MS).await > MAX_LATE {
            late += 1;
            continue;
        }
        match record_tick(&locks, runs.clone(), tick).await? {
            Some(pushed) => {
                pushed?;
                ran.push(tick);
            }
            None => skipped += 1,
        }
    }
    println!(
        "worker {worker} (pid {}): ran ticks {ran:?}, skipped {skipped}, woke too late {late}",
        std::process::id()
    );
    Ok(())
}
