//! Replicas on one machine, no server: the lock is a row in an SQLite file.
//!
//! Run it in two terminals and watch one of them run each tick (every two
//! seconds); stop one with Ctrl-C and the other runs every tick:
//!
//! ```text
//! cargo run --example sqlite
//! ```
//!
//! `SQLITE_FILE` names the file (default: `shedlock-example.db` in the
//! system's temporary directory); it and ShedLock's table are made on first
//! use. Each run prints who ran it (`locked_by`: host name and process id).

use std::time::Duration;

use shedlock::cron::LockedJobs;
use shedlock::cron::tokio_cron_scheduler::JobScheduler;
use shedlock::sql::SqliteLockProvider;
use shedlock::{LockConfiguration, SchedulerLock};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let file = std::env::var("SQLITE_FILE").map_or_else(
        |_| std::env::temp_dir().join("shedlock-example.db"),
        std::path::PathBuf::from,
    );
    let provider = SqliteLockProvider::open(&file).await?;
    provider.create_table_if_missing().await?;
    let me = provider.locked_by().to_owned();
    tracing::info!(file = %file.display(), %me, "locks in the SQLite file");

    // The job's lock: at most 1 minute, and kept 1 s past a short run so the
    // other process, whose scheduler fires a moment later, skips this tick.
    let config = LockConfiguration::new(
        "sqlite-example",
        Duration::from_secs(60),
        Duration::from_secs(1),
    )?;
    let mut scheduler = JobScheduler::new().await?;
    let jobs = LockedJobs::stopping_with(&mut scheduler);
    let job = jobs.locked_job("*/2 * * * * *", provider, config, move || {
        let me = me.clone();
        async move { tracing::info!(%me, "this process runs the tick") }
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;

    tokio::signal::ctrl_c().await?;
    scheduler.shutdown().await?;
    SchedulerLock::shutdown().await;
    Ok(())
}
