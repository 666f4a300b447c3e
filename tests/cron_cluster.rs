//! Three `tokio-cron-scheduler` replicas, each with its own Redis connection,
//! share an every-second job through one lock: each tick runs at most once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use shedlock::redis::RedisLockProvider;
use shedlock::{LockConfiguration, LockingTaskExecutor};
use shedlock_test_support::redis::RedisServer;
use tokio_cron_scheduler::{Job, JobScheduler};

const EVERY_SECOND: &str = "*/1 * * * * *";
const REPLICAS: usize = 3;
/// How far apart the replicas start, so their schedulers fire apart too.
const STAGGER: Duration = Duration::from_millis(150);
/// The scheduler polls every 500 ms, so replicas run one tick up to ~500 ms
/// apart; 800 ms covers that and frees the lock before the next tick.
const LOCK_AT_LEAST_FOR: Duration = Duration::from_millis(800);
const RUN_FOR: Duration = Duration::from_secs(4);

/// (tick: the second since the epoch when the job fired, replica) per run.
type Runs = Arc<Mutex<Vec<(u64, usize)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_runs_on_one_replica_only() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let config = LockConfiguration::new(
        "cron-cluster-tick",
        Duration::from_secs(30),
        LOCK_AT_LEAST_FOR,
    )?;
    let runs = Runs::default();

    let mut schedulers = Vec::new();
    for replica in 1..=REPLICAS {
        let provider = RedisLockProvider::connect(server.url())
            .await?
            .with_locked_by(format!("replica-{replica}"));
        let executor = LockingTaskExecutor::new(provider);
        let (config, runs) = (config.clone(), runs.clone());
        let job = Job::new_async(EVERY_SECOND, move |_job_id, _scheduler| {
            let (executor, config, runs) = (executor.clone(), config.clone(), runs.clone());
            Box::pin(async move {
                let tick = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |now| now.as_secs());
                let record = async {
                    if let Ok(mut runs) = runs.lock() {
                        runs.push((tick, replica));
                    }
                };
                if let Err(err) = executor.execute(&config, record).await {
                    eprintln!("replica {replica}, tick {tick}: {err}");
                }
            })
        })?;
        let scheduler = JobScheduler::new().await?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        schedulers.push(scheduler);
        tokio::time::sleep(STAGGER).await;
    }

    tokio::time::sleep(RUN_FOR).await;
    for scheduler in &mut schedulers {
        scheduler.shutdown().await?;
    }

    let mut runs = runs
        .lock()
        .map_err(|_| anyhow::anyhow!("a job panicked"))?
        .clone();
    runs.sort();
    println!("(tick, replica) runs: {runs:?}");
    let twice: Vec<_> = runs
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .collect();
    assert!(twice.is_empty(), "ticks that ran twice: {twice:?}");
    assert!(
        runs.len() >= 3,
        "only {} ticks ran in {RUN_FOR:?}: {runs:?}",
        runs.len()
    );
    Ok(())
}
