//! Missed ticks across process restarts, on Redis: a replica runs a job of
//! a schedule every two seconds, then every replica is down for about five
//! ticks, then one starts again catching up (`LockedJobs::catching_up`). The
//! ticks nobody ran are one `missed` entry in the history (how many, the
//! first and the last) and a `warn` event in the new replica's log; the new
//! replica runs the last missed tick once at once, late, then the next
//! ticks on time, each once.
//!
//! The replicas are this test binary again, running `missing_replica`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use redis::AsyncTypedCommands;
use shedlock::LockConfiguration;
use shedlock::admin::{LockAdmin, RunOutcome};
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::ticks::finish_workers;
use shedlock_test_support::{Worker, now_ms};
use tokio_cron_scheduler::JobScheduler;

const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";
const PERIOD_MS: u64 = 2_000;
const LOCK: &str = "missed-ticks";
/// Where the replicas report each run: `<tick ms> <start ms>`.
const RUNS: &str = "missed-tick-runs";
/// The catch-up window of the replica that starts again.
const CATCH_UP: Duration = Duration::from_secs(10);

const URL_ENV: &str = "SHEDLOCK_MISSED_REDIS_URL";
/// The replica runs until its clock reads this (ms since 1970).
const UNTIL_ENV: &str = "SHEDLOCK_MISSED_UNTIL_MS";
/// Set: the replica catches up on a missed tick when it starts.
const CATCH_UP_ENV: &str = "SHEDLOCK_MISSED_CATCH_UP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_every_replica_was_down_are_recorded_and_the_last_caught_up_once()
-> anyhow::Result<()> {
    let server = RedisServer::start();
    let url = server.url();
    // The first replica runs three ticks or so, then stops.
    let stops_at = (now_ms() / PERIOD_MS + 4) * PERIOD_MS + 300;
    let first = Worker::spawn(
        "missing_replica",
        &[(URL_ENV, url), (UNTIL_ENV, &stops_at.to_string())],
    );
    finish_workers(vec![first], Duration::from_secs(30), &[]).await;
    let mut redis = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let before = runs(&mut redis).await?;
    let last_before = *before
        .keys()
        .last()
        .context("the first replica ran no tick")?;

    // Down for five ticks: the second replica starts half a second after the
    // sixth tick from the last one run, between two ticks.
    let restart_at = last_before + 6 * PERIOD_MS + 500;
    tokio::time::sleep(Duration::from_millis(restart_at.saturating_sub(now_ms()))).await;
    let stops_at = restart_at + 3 * PERIOD_MS;
    let second = Worker::spawn(
        "missing_replica",
        &[
            (URL_ENV, url),
            (UNTIL_ENV, &stops_at.to_string()),
            (CATCH_UP_ENV, "1"),
        ],
    );
    let output = finish_workers(vec![second], Duration::from_secs(30), &[]).await;

    let after: BTreeMap<u64, Vec<u64>> = runs(&mut redis)
        .await?
        .into_iter()
        .filter(|(tick, _)| *tick > last_before)
        .collect();
    let caught_up = *after
        .keys()
        .next()
        .context("the second replica ran no tick")?;
    let missed = (caught_up - last_before) / PERIOD_MS - 1;
    // Each tick once; the first one late (caught up at start), the rest on time.
    for (tick, starts) in &after {
        ensure!(
            starts.len() == 1,
            "tick {tick} ran {} times: {after:?}",
            starts.len()
        );
    }
    let late_by = after[&caught_up][0].saturating_sub(caught_up);
    ensure!(
        late_by >= 400,
        "the first tick after the restart was not a catch-up: {after:?}"
    );
    let ticks: Vec<u64> = after.keys().copied().collect();
    ensure!(
        ticks.windows(2).all(|pair| pair[1] - pair[0] == PERIOD_MS) && ticks.len() >= 2,
        "the ticks after the catch-up: {after:?}"
    );
    ensure!(
        missed >= 4,
        "{missed} ticks missed: the replicas were not down long enough"
    );

    // The history: one `missed` entry between the runs around the gap.
    let admin = RedisLockProvider::connect(url).await?;
    let history = admin.run_history(LOCK).await?;
    let entry = history
        .iter()
        .find(|run| run.outcome == RunOutcome::Missed)
        .context("no missed entry in the history")?;
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    ensure!(
        entry.missed_ticks == Some(missed),
        "{entry:?}, {missed} missed"
    );
    ensure!(entry.started_at == at(last_before + PERIOD_MS), "{entry:?}");
    ensure!(entry.finished_at == at(caught_up - PERIOD_MS), "{entry:?}");
    // And the log of the replica that found them.
    let logged = output.first().is_some_and(|log| {
        log.contains("ticks missed") && log.contains(&format!("missed={missed}"))
    });
    ensure!(
        logged,
        "no warning of the missed ticks in the log:\n{output:?}"
    );
    println!(
        "{missed} ticks missed, caught up {late_by} ms late, then {} ticks",
        ticks.len() - 1
    );
    Ok(())
}

/// The runs reported so far: each tick's start times, by tick.
async fn runs(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<u64, Vec<u64>>> {
    let mut runs: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for report in redis.lrange(RUNS, 0, -1).await? {
        let (tick, start) = report.split_once(' ').context("malformed report")?;
        runs.entry(tick.parse()?).or_default().push(start.parse()?);
    }
    Ok(runs)
}

/// One replica: the job on its schedule (catching up when asked), with run
/// history, until its clock reads the time given; shedlock's warnings on
/// its output. Does nothing as a plain test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of ticks_missed_while_every_replica_was_down_*"]
async fn missing_replica() -> anyhow::Result<()> {
    let Ok(url) = std::env::var(URL_ENV) else {
        return Ok(());
    };
    tracing_subscriber::fmt()
        .with_env_filter("shedlock_core=warn")
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let until_ms: u64 = std::env::var(UNTIL_ENV)?.parse()?;
    let provider = RedisLockProvider::connect(&url)
        .await?
        .with_run_history(true);
    let reports = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let jobs = match std::env::var(CATCH_UP_ENV) {
        Ok(_) => LockedJobs::new().catching_up(CATCH_UP),
        Err(_) => LockedJobs::new(),
    };
    let mut scheduler = JobScheduler::new().await?;
    let config = LockConfiguration::new(LOCK, Duration::from_secs(10), Duration::ZERO)?;
    let job = jobs.locked_job(EVERY_TWO_SECONDS, provider, config, move || {
        let mut reports = reports.clone();
        async move {
            // The tick this run is for: the schedule's latest instant.
            let start = now_ms();
            let tick = start / PERIOD_MS * PERIOD_MS;
            let _ = reports.rpush(RUNS, format!("{tick} {start}")).await;
        }
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    while now_ms() < until_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.stop().await;
    scheduler.shutdown().await?;
    Ok(())
}
