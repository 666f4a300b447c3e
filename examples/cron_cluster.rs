//! Three replicas, each with its own `tokio-cron-scheduler` and its own Redis
//! connection, schedule the same every-second job made with
//! `shedlock::cron::LockedJobs`: each tick runs on one of them.
//!
//! Needs a Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`):
//!
//! ```text
//! cargo run --example cron_cluster
//! REDIS_URL=redis://10.0.0.5:6379 SECONDS=20 cargo run --example cron_cluster
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use shedlock::LockConfiguration;
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use tokio_cron_scheduler::JobScheduler;
use tracing_subscriber::EnvFilter;

/// Every second (fields: sec min hour day-of-month month day-of-week).
const EVERY_SECOND: &str = "*/1 * * * * *";
const REPLICAS: usize = 3;

/// tokio-cron-scheduler looks for due jobs every 500 ms, so the replicas run a
/// tick up to ~500 ms apart. Holding the lock 800 ms covers that spread, and
/// still frees it before the next tick, 1 s later.
const LOCK_AT_LEAST_FOR: Duration = Duration::from_millis(800);

/// How far apart the replicas start.
const STAGGER: Duration = Duration::from_millis(150);

/// Which replicas ran each tick (a second since the epoch).
type Runs = Arc<Mutex<BTreeMap<u64, Vec<String>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let seconds: u64 = match std::env::var("SECONDS") {
        Ok(seconds) => seconds
            .parse()
            .with_context(|| format!("SECONDS={seconds:?} is not a whole number of seconds"))?,
        Err(_) => 6,
    };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    let config = LockConfiguration::new(
        "cron-cluster-report",
        Duration::from_secs(30),
        LOCK_AT_LEAST_FOR,
    )?;
    let runs = Runs::default();
    let mut schedulers = Vec::new();
    for n in 1..=REPLICAS {
        let replica = format!("replica-{n}");
        // Each replica connects on its own, as separate processes would.
        let provider = RedisLockProvider::connect(&url)
            .await?
            .with_locked_by(&replica);
        let mut scheduler = JobScheduler::new().await?;
        // Shutting the scheduler down cancels a report in progress and gives its lock back.
        let jobs = LockedJobs::stopping_with(&mut scheduler);
        let runs = runs.clone();
        let job = jobs.locked_job(EVERY_SECOND, provider, config.clone(), move || {
            report(replica.clone(), runs.clone())
        })?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        schedulers.push(scheduler);
        // Real replicas start at different times, so their schedulers fire a
        // little apart: only lock_at_least_for makes the later ones skip.
        tokio::time::sleep(STAGGER).await;
    }
    println!(
        "{REPLICAS} replicas scheduled '{EVERY_SECOND}'; running for {seconds} s (UTC times):"
    );

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for scheduler in &mut schedulers {
        scheduler.shutdown().await?;
    }

    let runs = runs.lock().map_err(|_| anyhow::anyhow!("a job panicked"))?;
    let twice: Vec<_> = runs.iter().filter(|(_, by)| by.len() > 1).collect();
    if twice.is_empty() {
        println!("{} ticks, each run by exactly one replica.", runs.len());
    } else {
        println!("{} ticks; run more than once: {twice:?}", runs.len());
    }
    Ok(())
}

/// The report, run by the replica that took this tick's lock. The other
/// replicas skip the tick (logged at `debug`, with the lock's name).
async fn report(replica: String, runs: Runs) {
    let (tick, time) = tick_now();
    if let Ok(mut runs) = runs.lock() {
        runs.entry(tick).or_default().push(replica.clone());
    }
    let token = match shedlock::current_lock() {
        Some(lock) => lock.fencing_token().await.unwrap_or_default(),
        None => 0,
    };
    println!("{time}  {replica} runs the report (fencing token {token})");
}

/// The current second since the epoch (the tick being run), and the time
/// as `HH:MM:SS +late` (UTC, and how late past the second this scheduler fired).
fn tick_now() -> (u64, String) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let second = now.as_secs();
    let (h, m, s) = (second / 3600 % 24, second / 60 % 60, second % 60);
    let late = format!("+{}ms", now.subsec_millis());
    (second, format!("{h:02}:{m:02}:{s:02} {late:>6}"))
}
