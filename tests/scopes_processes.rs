//! Job scopes across four OS processes on one Redis: 40 scopes spread to
//! 10 ± 2 per process, a SIGKILLed process's scopes are taken over within
//! lease duration + sweep interval, no two processes ever run one scope's job
//! at the same time, and a graceful shutdown gives every scope back at once.
//!
//! The processes are this test binary again, running only `scope_worker`
//! (an ignored test that does nothing unless `URL_ENV` is set).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use shedlock::SchedulerLock;
use shedlock::admin::LockAdmin;
use shedlock::redis::RedisLockProvider;
use shedlock::scheduler_lock;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::ticks::{finish_workers, spawn_workers};

const WORKERS: usize = 4;
const SCOPES: usize = 40;
const LEASE: Duration = Duration::from_secs(2);
const SWEEP: Duration = Duration::from_millis(250);
/// How often each worker ticks every scope's job.
const TICK: Duration = Duration::from_millis(50);
/// The Redis list every run is pushed to: `scope worker term start_ms end_ms`.
const RUNS: &str = "runs";
/// Set by the test when the workers are to shut down gracefully.
const STOP: &str = "stop";

const URL_ENV: &str = "SHEDLOCK_SCOPES_REDIS_URL";
const WORKER_ENV: &str = "SHEDLOCK_SCOPES_WORKER";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |now| now.as_millis())
}

/// A scope's job: records the run with its term (the scope's fencing token).
#[scheduler_lock(
    name = "tenant-job-{scope}",
    scope = "tenant-{scope}",
    lock_at_most_for = "30s"
)]
async fn tenant_job(
    scope: usize,
    worker: &str,
    mut runs: MultiplexedConnection,
) -> anyhow::Result<()> {
    let start = now_ms();
    let term = match shedlock::current_lock() {
        Some(lock) => lock.fencing_token().await?,
        None => anyhow::bail!("a scoped run without its lock"),
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let end = now_ms();
    runs.rpush(RUNS, format!("{scope} {worker} {term} {start} {end}"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_spread_move_on_a_crash_and_come_back_on_shutdown() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let admin = RedisLockProvider::connect(server.url()).await?;
    let mut redis = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let started = Instant::now();
    let mut workers = spawn_workers(
        "scope_worker",
        WORKERS,
        WORKER_ENV,
        &[(URL_ENV, server.url())],
    );

    // Convergence: every scope owned, 10 ± 2 each.
    let converged = loop {
        let owners = owners(&admin).await?;
        let counts = counts(&owners);
        if owners.len() == SCOPES && counts.len() == WORKERS {
            break counts;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the scopes did not converge: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let convergence = started.elapsed();
    println!("converged after {convergence:?}: {converged:?}");
    for (worker, count) in &converged {
        anyhow::ensure!(
            (8..=12).contains(count),
            "{worker} owns {count} scopes, not 10 ± 2: {converged:?}"
        );
    }

    // A crash: the killed worker's scopes move to the others.
    let owned_before = owners(&admin).await?;
    let victim_scopes: Vec<usize> = owned_before
        .iter()
        .filter(|(_, owner)| owner.as_str() == "worker-0")
        .map(|(scope, _)| *scope)
        .collect();
    workers[0].kill();
    let killed = Instant::now();
    let mut taken_at: HashMap<usize, Duration> = HashMap::new();
    while taken_at.len() < victim_scopes.len() {
        let owners = owners(&admin).await?;
        for scope in &victim_scopes {
            if let Some(owner) = owners.get(scope)
                && owner != "worker-0"
            {
                taken_at.entry(*scope).or_insert_with(|| killed.elapsed());
            }
        }
        anyhow::ensure!(
            killed.elapsed() < LEASE + SWEEP * 4,
            "scopes of the killed worker not taken over: {taken_at:?} of {victim_scopes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slowest = taken_at.values().max().copied().unwrap_or_default();
    let fastest = taken_at.values().min().copied().unwrap_or_default();
    let after = counts(&owners(&admin).await?);
    println!(
        "after SIGKILL of worker-0: its {} scopes taken over in {fastest:?}..{slowest:?} \
         (lease {LEASE:?} + sweep {SWEEP:?}); owners now {after:?}",
        victim_scopes.len()
    );
    // Measured by polling every 20 ms: the bound, plus one poll and one tick.
    anyhow::ensure!(
        slowest <= LEASE + SWEEP + TICK + Duration::from_millis(100),
        "takeover took {slowest:?}, over lease + sweep interval"
    );

    // A graceful shutdown: every scope comes back at once.
    redis.set(STOP, 1).await?;
    let survivors = workers.split_off(1);
    finish_workers(survivors, Duration::from_secs(20), &["worker "]).await;
    let left = owners(&admin).await?;
    anyhow::ensure!(
        left.is_empty(),
        "scopes still held after a graceful shutdown: {left:?}"
    );

    // No two workers ever ran one scope's job at once; terms rise per scope.
    let runs = redis.lrange(RUNS, 0, -1).await?;
    check_runs(&runs)?;
    println!("{} runs checked", runs.len());
    Ok(())
}

/// Which worker owns each scope, as the store shows it.
async fn owners(admin: &RedisLockProvider) -> anyhow::Result<BTreeMap<usize, String>> {
    let mut owners = BTreeMap::new();
    for scope in 0..SCOPES {
        let state = admin.lock_state(&format!("scope:tenant-{scope}")).await?;
        if let Some(holder) = state.holders.first() {
            owners.insert(scope, holder.locked_by.clone());
        }
    }
    Ok(owners)
}

fn counts(owners: &BTreeMap<usize, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.values() {
        *counts.entry(owner.clone()).or_default() += 1;
    }
    counts
}

/// Per scope, sorted by start: runs by different workers never overlap, and
/// a new owner's term is greater than the last one's.
fn check_runs(runs: &[String]) -> anyhow::Result<()> {
    let mut by_scope: HashMap<&str, Vec<(u128, u128, &str, u64)>> = HashMap::new();
    for run in runs {
        let fields: Vec<&str> = run.split(' ').collect();
        let [scope, worker, term, start, end] = fields[..] else {
            anyhow::bail!("malformed run {run:?}");
        };
        by_scope.entry(scope).or_default().push((
            start.parse()?,
            end.parse()?,
            worker,
            term.parse()?,
        ));
    }
    for (scope, runs) in &mut by_scope {
        runs.sort_unstable();
        for pair in runs.windows(2) {
            let [(_, end, worker, term), (start, _, next_worker, next_term)] = pair else {
                continue;
            };
            if worker != next_worker {
                anyhow::ensure!(
                    start >= end,
                    "scope {scope}: {worker} and {next_worker} ran at once: {pair:?}"
                );
                anyhow::ensure!(
                    next_term > term,
                    "scope {scope}: the new owner's term did not rise: {pair:?}"
                );
            } else {
                anyhow::ensure!(next_term >= term, "scope {scope}: term fell: {pair:?}");
            }
        }
    }
    Ok(())
}

/// One worker process: ticks every scope's job every `TICK` until the test
/// sets `STOP`, then shuts down gracefully. Does nothing as a plain test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of scopes_spread_move_on_a_crash_and_come_back_on_shutdown"]
async fn scope_worker() -> anyhow::Result<()> {
    let Ok(url) = std::env::var(URL_ENV) else {
        return Ok(());
    };
    let worker = format!("worker-{}", std::env::var(WORKER_ENV).unwrap_or_default());
    SchedulerLock::builder(
        RedisLockProvider::connect(&url)
            .await?
            .with_locked_by(worker.clone()),
    )
    .default_lock_at_most_for(Duration::from_secs(30))
    .scope_lease_duration(LEASE)
    .scope_sweep_interval(SWEEP)
    .install()?;
    let mut redis = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let (mut ran, mut skipped) = (0, 0);
    while !redis.exists(STOP).await? {
        for scope in 0..SCOPES {
            match tenant_job(scope, &worker, redis.clone()).await? {
                Some(run) => {
                    run?;
                    ran += 1;
                }
                None => skipped += 1,
            }
        }
        tokio::time::sleep(TICK).await;
    }
    let owned = SchedulerLock::owned_scopes().len();
    SchedulerLock::shutdown().await;
    println!("worker {worker}: ran {ran}, skipped {skipped}, gave up {owned} scopes");
    Ok(())
}
