//! Exactly one run per tick across three processes, one of them with its
//! clock 400 ms ahead (libfaketime), on Redis and on PostgreSQL: a job every
//! second that runs 10 ms, without `lock_at_least_for`. The same job with a
//! plain lock (tokio-cron-scheduler's own job under `LockingTaskExecutor`,
//! no tick claimed) runs in the same processes beside it, and its double
//! runs are counted: what tick claims prevent.
//!
//! The replicas are this test binary again, running `tick_replica`.
//!
//! Missed ticks across restarts, on Redis: a replica runs a job of a
//! schedule every two seconds, then every replica is down for about five
//! ticks, then one starts again catching up (`LockedJobs::catching_up`). The
//! ticks nobody ran are one `missed` entry in the history (how many, the
//! first and the last) and a `warn` event in the new replica's log; the new
//! replica runs the last missed tick once at once, late, then the next
//! ticks on time, each once (replicas running `missing_replica`). Runs
//! are recorded as the second of the tick the replica's scheduler fired for
//! (by its own clock, as it claims it).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use shedlock::admin::{LockAdmin, RunOutcome};
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock::sql::PostgresLockProvider;
use shedlock::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{postgres, postgres_url, unique_table_name};
use shedlock_test_support::ticks::{Ticks, finish_workers, until_tick_ends};
use shedlock_test_support::{Worker, now_ms};
use tokio_cron_scheduler::{Job, JobScheduler};

const REPLICAS: usize = 3;
/// Ticks the replicas run together; the first and the last are left out of
/// the count (a replica may start or stop within them).
const TICKS: u64 = 33;
const MIN_COUNTED_TICKS: usize = 30;
/// How far ahead replica 0's clock is (libfaketime's `FAKETIME`).
const SKEW: &str = "+0.4";
const SKEW_MS: i64 = 400;
const EVERY_SECOND: &str = "* * * * * *";
const JOB_LENGTH: Duration = Duration::from_millis(10);
/// Where the replicas report: `skew <replica> <ms>`, `<job> <second> <replica>`.
const RUNS: &str = "tick-runs";
const CLAIMED: &str = "claimed";
const PLAIN: &str = "plain";

const RUNS_ENV: &str = "SHEDLOCK_TICKS_REDIS_URL";
const TICKS_ENV: &str = "SHEDLOCK_TICKS_TICKS";
const REPLICA_ENV: &str = "SHEDLOCK_TICKS_REPLICA";
/// A PostgreSQL URL and table: the locks' store; without them, the Redis above.
const STORE_ENV: &str = "SHEDLOCK_TICKS_STORE_URL";
const TABLE_ENV: &str = "SHEDLOCK_TICKS_TABLE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_tick_across_skewed_processes_on_redis() -> anyhow::Result<()> {
    let server = RedisServer::start();
    one_run_per_tick(&server, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_tick_across_skewed_processes_on_postgres() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let table = unique_table_name("ticks");
    postgres(&table).await;
    let url = postgres_url();
    one_run_per_tick(&server, &[(STORE_ENV, &url), (TABLE_ENV, &table)]).await
}

async fn one_run_per_tick(server: &RedisServer, store: &[(&str, &str)]) -> anyhow::Result<()> {
    let ticks = Ticks::after(Duration::from_secs(4), 1000, TICKS);
    let shown = ticks.to_string();
    let mut envs = vec![(RUNS_ENV, server.url()), (TICKS_ENV, shown.as_str())];
    envs.extend_from_slice(store);
    let numbers: Vec<String> = (0..REPLICAS).map(|replica| replica.to_string()).collect();
    let workers: Vec<Worker> = numbers
        .iter()
        .map(|number| {
            let mut envs = envs.clone();
            envs.push((REPLICA_ENV, number));
            match number.as_str() {
                "0" => Worker::spawn_skewed("tick_replica", &envs, SKEW),
                _ => Worker::spawn("tick_replica", &envs),
            }
        })
        .collect();
    let timeout = until_tick_ends(ticks.last, 1000, Duration::from_secs(20));
    finish_workers(workers, timeout, &[]).await;

    let mut redis = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let reports = redis.lrange(RUNS, 0, -1).await?;
    let mut skews = BTreeMap::new();
    let mut runs: BTreeMap<(&str, u64), Vec<&str>> = BTreeMap::new();
    for report in &reports {
        let words: Vec<&str> = report.split(' ').collect();
        match words.as_slice() {
            ["skew", replica, ms] => {
                skews.insert(*replica, ms.parse::<i64>()?);
            }
            [job, second, replica] => runs
                .entry((*job, second.parse()?))
                .or_default()
                .push(*replica),
            _ => anyhow::bail!("malformed report {report:?}"),
        }
    }
    // libfaketime applied: replica 0 is 400 ms ahead of the server, the others are not.
    for (replica, skew) in &skews {
        let expected = if *replica == "0" { SKEW_MS } else { 0 };
        ensure!(
            (skew - expected).abs() < 150,
            "replica {replica}'s clock is {skew} ms off the server's, not about {expected} ms: {skews:?}"
        );
    }
    ensure!(
        skews.len() == REPLICAS,
        "not every replica reported its clock: {skews:?}"
    );

    let counted = (ticks.first + 1)..ticks.last;
    let per_tick = |job: &str| -> Vec<(u64, usize)> {
        counted
            .clone()
            .map(|second| (second, runs.get(&(job, second)).map_or(0, Vec::len)))
            .collect()
    };
    let claimed = per_tick(CLAIMED);
    let plain = per_tick(PLAIN);
    let doubles = plain.iter().filter(|(_, n)| *n > 1).count();
    println!(
        "{} ticks; with tick claims: {} ran once, {} more than once, {} not at all; \
         with a plain lock: {doubles} ran more than once ({} runs in all)",
        claimed.len(),
        claimed.iter().filter(|(_, n)| *n == 1).count(),
        claimed.iter().filter(|(_, n)| *n > 1).count(),
        claimed.iter().filter(|(_, n)| *n == 0).count(),
        plain.iter().map(|(_, n)| n).sum::<usize>(),
    );
    ensure!(claimed.len() >= MIN_COUNTED_TICKS, "too few ticks counted");
    for (second, count) in &claimed {
        ensure!(
            *count == 1,
            "tick {second} ran {count} times with tick claims: {:?}",
            runs.get(&(CLAIMED, *second))
        );
    }
    ensure!(
        doubles > 0,
        "the plain lock ran no tick twice: the setup did not show what tick claims prevent"
    );
    Ok(())
}

/// One replica: a scheduler with the claimed job (the cron helper) and the
/// plain one, until its clock passes the last tick; reports its clock's
/// offset from the Redis server's first. Does nothing as a plain test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of one_run_per_tick_across_skewed_processes_*"]
async fn tick_replica() -> anyhow::Result<()> {
    let Ok(url) = std::env::var(RUNS_ENV) else {
        return Ok(());
    };
    let replica: Arc<str> = std::env::var(REPLICA_ENV)?.into();
    let ticks = Ticks::from_env(TICKS_ENV).map_err(anyhow::Error::msg)?;
    let mut reports = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let (server_s, server_us): (u64, u64) = redis::cmd("TIME").query_async(&mut reports).await?;
    let skew = i64::try_from(now_ms())? - i64::try_from(server_s * 1000 + server_us / 1000)?;
    reports
        .rpush(RUNS, format!("skew {replica} {skew}"))
        .await?;
    let replica = Replica {
        replica,
        reports,
        until_ms: (ticks.last + 1) * 1000 + 500,
    };
    match std::env::var(STORE_ENV) {
        Ok(store) => {
            let table = std::env::var(TABLE_ENV)?;
            replica
                .run(|| async {
                    PostgresLockProvider::connect(&store)
                        .await?
                        .with_table_name(&table)
                })
                .await
        }
        Err(_) => replica.run(|| RedisLockProvider::connect(&url)).await,
    }
}

/// A replica's jobs, until its clock reads `until_ms`.
struct Replica {
    replica: Arc<str>,
    reports: MultiplexedConnection,
    until_ms: u64,
}

impl Replica {
    /// Runs the claimed job and the plain one, each on a provider of its
    /// own from `connect`.
    async fn run<P, F, Fut>(self, connect: F) -> anyhow::Result<()>
    where
        P: LockProvider + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<P, shedlock::LockError>>,
    {
        let Replica {
            replica,
            reports,
            until_ms,
        } = self;
        let (claiming, plain) = (connect().await?, connect().await?);
        let config =
            |name: &str| LockConfiguration::new(name, Duration::from_secs(10), Duration::ZERO);
        let jobs = LockedJobs::new();
        let claimed = {
            let (reports, replica) = (reports.clone(), replica.clone());
            jobs.locked_job(
                EVERY_SECOND,
                claiming,
                config("ticks-claimed")?,
                move || run(reports.clone(), CLAIMED, replica.clone()),
            )?
        };
        let executor = Arc::new(LockingTaskExecutor::new(plain));
        let plain_config = Arc::new(config("ticks-plain")?);
        let plain = Job::new_async(EVERY_SECOND, move |_, _| {
            let (executor, config) = (executor.clone(), plain_config.clone());
            let (reports, replica) = (reports.clone(), replica.clone());
            Box::pin(async move {
                let _ = executor
                    .execute(&config, run(reports, PLAIN, replica))
                    .await;
            })
        })?;
        schedule_until(&jobs, [claimed, plain], until_ms).await
    }
}

/// Runs `scheduled` (made by `jobs`) on a scheduler of their own until this
/// process's clock reads `until_ms`, then stops them and the scheduler.
async fn schedule_until<const N: usize>(
    jobs: &LockedJobs,
    scheduled: [Job; N],
    until_ms: u64,
) -> anyhow::Result<()> {
    let scheduler = JobScheduler::new().await?;
    for job in scheduled {
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    while now_ms() < until_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.stop().await;
    let mut scheduler = scheduler;
    scheduler.shutdown().await?;
    Ok(())
}

/// The job: 10 ms of work, then a report of the tick it ran for (the second
/// its scheduler fired in, by this replica's clock).
async fn run(mut reports: MultiplexedConnection, job: &'static str, replica: Arc<str>) {
    let second = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    tokio::time::sleep(JOB_LENGTH).await;
    let _ = reports
        .rpush(RUNS, format!("{job} {second} {replica}"))
        .await;
}

const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";
const PERIOD_MS: u64 = 2_000;
const LOCK: &str = "missed-ticks";
/// Where the replicas report each run: `<tick ms> <start ms>`.
const MISSED_RUNS: &str = "missed-tick-runs";
/// The catch-up window of the replica that starts again.
const CATCH_UP: Duration = Duration::from_secs(10);

const MISSED_URL_ENV: &str = "SHEDLOCK_MISSED_REDIS_URL";
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
        &[(MISSED_URL_ENV, url), (UNTIL_ENV, &stops_at.to_string())],
    );
    finish_workers(vec![first], Duration::from_secs(30), &[]).await;
    let mut redis = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let before = missed_runs(&mut redis).await?;
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
            (MISSED_URL_ENV, url),
            (UNTIL_ENV, &stops_at.to_string()),
            (CATCH_UP_ENV, "1"),
        ],
    );
    let output = finish_workers(vec![second], Duration::from_secs(30), &[]).await;

    let after: BTreeMap<u64, Vec<u64>> = missed_runs(&mut redis)
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
async fn missed_runs(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<u64, Vec<u64>>> {
    let mut runs: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for report in redis.lrange(MISSED_RUNS, 0, -1).await? {
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
    let Ok(url) = std::env::var(MISSED_URL_ENV) else {
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
    let config = LockConfiguration::new(LOCK, Duration::from_secs(10), Duration::ZERO)?;
    let job = jobs.locked_job(EVERY_TWO_SECONDS, provider, config, move || {
        let mut reports = reports.clone();
        async move {
            // The tick this run is for: the schedule's latest instant.
            let start = now_ms();
            let tick = start / PERIOD_MS * PERIOD_MS;
            let _ = reports.rpush(MISSED_RUNS, format!("{tick} {start}")).await;
        }
    })?;
    schedule_until(&jobs, [job], until_ms).await
}
