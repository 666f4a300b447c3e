//! Three `tokio-cron-scheduler` replicas, each with its own Redis connection,
//! share an every-second job made with `shedlock::cron::LockedJobs`: every
//! tick runs exactly once, over more than ten ticks. Once with a job made from
//! a lock configuration and a closure, once with a `#[scheduler_lock]` function.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock::{LockConfiguration, LockError};
use shedlock_test_support::redis::RedisServer;
use tokio_cron_scheduler::{Job, JobScheduler};

const EVERY_SECOND: &str = "*/1 * * * * *";
const REPLICAS: usize = 3;
/// How far apart the replicas start, so their schedulers fire apart too.
const STAGGER: Duration = Duration::from_millis(150);
/// The scheduler polls every 500 ms, so replicas run one tick up to ~500 ms
/// apart; 800 ms covers that and frees the lock before the next tick. The
/// attribute of `record_annotated` says the same.
const LOCK_AT_LEAST_FOR: Duration = Duration::from_millis(800);
/// How long all replicas run together: at least ten whole ticks.
const RUN_FOR: Duration = Duration::from_millis(11_500);
const MIN_TICKS: usize = 10;

/// (tick: the second since the epoch when the job fired, replica) per run.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<(u64, usize)>>>);

impl Runs {
    /// Records a run of the current tick by `replica`.
    fn record(&self, replica: usize) {
        let tick = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |now| now.as_secs());
        if let Ok(mut runs) = self.0.lock() {
            runs.push((tick, replica));
        }
    }

    /// The replicas that ran each tick.
    fn by_tick(&self) -> BTreeMap<u64, Vec<usize>> {
        let mut by_tick = BTreeMap::<u64, Vec<usize>>::new();
        if let Ok(runs) = self.0.lock() {
            for &(tick, replica) in runs.iter() {
                by_tick.entry(tick).or_default().push(replica);
            }
        }
        by_tick
    }
}

/// Runs [`REPLICAS`] schedulers, each with the job `make_job` makes for it,
/// for [`RUN_FOR`]; then checks that each tick from the first to the last ran
/// exactly once, and that there were at least [`MIN_TICKS`].
async fn every_tick_runs_once<F>(make_job: F) -> anyhow::Result<()>
where
    F: Fn(&LockedJobs, RedisLockProvider, usize, Runs) -> Result<Job, LockError>,
{
    let server = RedisServer::start();
    let runs = Runs::default();
    let mut schedulers = Vec::new();
    for replica in 1..=REPLICAS {
        let provider = RedisLockProvider::connect(server.url())
            .await?
            .with_locked_by(format!("replica-{replica}"));
        let mut scheduler = JobScheduler::new().await?;
        let jobs = LockedJobs::stopping_with(&mut scheduler);
        scheduler
            .add(make_job(&jobs, provider, replica, runs.clone())?)
            .await?;
        scheduler.start().await?;
        schedulers.push(scheduler);
        tokio::time::sleep(STAGGER).await;
    }

    tokio::time::sleep(RUN_FOR).await;
    for scheduler in &mut schedulers {
        scheduler.shutdown().await?;
    }

    let by_tick = runs.by_tick();
    println!("replicas that ran each tick: {by_tick:?}");
    let twice: Vec<_> = by_tick.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "ticks that ran more than once: {twice:?}");
    let (Some(&first), Some(&last)) = (by_tick.keys().next(), by_tick.keys().last()) else {
        panic!("no tick ran in {RUN_FOR:?}");
    };
    let missed: Vec<u64> = (first..=last)
        .filter(|tick| !by_tick.contains_key(tick))
        .collect();
    assert!(missed.is_empty(), "ticks that did not run: {missed:?}");
    assert!(
        by_tick.len() >= MIN_TICKS,
        "only {} ticks ran in {RUN_FOR:?}: {by_tick:?}",
        by_tick.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_runs_on_one_replica_only() -> anyhow::Result<()> {
    let config = LockConfiguration::new(
        "cron-cluster-tick",
        Duration::from_secs(30),
        LOCK_AT_LEAST_FOR,
    )?;
    every_tick_runs_once(|jobs, provider, replica, runs| {
        jobs.locked_job(EVERY_SECOND, provider, config.clone(), move || {
            let runs = runs.clone();
            async move { runs.record(replica) }
        })
    })
    .await
}

#[shedlock::scheduler_lock(name = "cron-cluster-annotated", lock_at_most_for = "30s", lock_at_least_for = "800ms", provider = provider)]
async fn record_annotated(provider: &RedisLockProvider, replica: usize, runs: Runs) {
    runs.record(replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_of_an_annotated_function_runs_on_one_replica_only() -> anyhow::Result<()> {
    every_tick_runs_once(|jobs, provider, replica, runs| {
        jobs.annotated_job(EVERY_SECOND, move || {
            let (provider, runs) = (provider.clone(), runs.clone());
            async move { record_annotated(&provider, replica, runs).await }
        })
    })
    .await
}
