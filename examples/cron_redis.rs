//! The README's program: a tokio-cron-scheduler job that runs on one replica
//! per tick, with its lock in Redis.
//!
//! Needs a Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). Run it in
//! two or three terminals and watch one of them write each report:
//!
//! ```text
//! cargo run --example cron_redis
//! CRON="* * * * * *" RUST_LOG=info,shedlock=debug cargo run --example cron_redis
//! ```
//!
//! `CRON` replaces the schedule (seconds first; default: second 0 of every
//! minute). Ctrl-C stops the scheduler, which gives the locks of runs in
//! progress back, then the job scopes this process owns.

use std::time::Duration;

use shedlock::SchedulerLock;
use shedlock::cron::LockedJobs;
use shedlock::cron::tokio_cron_scheduler::JobScheduler;
use shedlock::redis::RedisLockProvider;
use tracing_subscriber::EnvFilter;

/// No `lock_at_most_for` here: the installed default (10 minutes) applies.
/// No `lock_at_least_for` either: the cron helper's job claims the tick it
/// fires for (the schedule's instant), so a replica whose clock or scheduler
/// is late skips a tick another replica ran, however short the run.
#[shedlock::scheduler_lock(name = "minute-report")]
async fn minute_report() -> anyhow::Result<()> {
    shedlock::assert_locked();
    tracing::info!("writing the report"); // inside the `scheduler_lock` span: carries `lock`
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=info,shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    // Once at startup, like @EnableSchedulerLock(defaultLockAtMostFor = "PT10M").
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let provider = RedisLockProvider::connect(&url).await?;
    SchedulerLock::builder(provider)
        .default_lock_at_most_for(Duration::from_secs(10 * 60))
        .install()?;

    let mut scheduler = JobScheduler::new().await?;
    // Makes the scheduler's shutdown cancel runs in progress and give their locks back.
    let jobs = LockedJobs::stopping_with(&mut scheduler);
    // sec min hour day-of-month month day-of-week (UTC): second 0 of every minute.
    let schedule = std::env::var("CRON").unwrap_or_else(|_| "0 * * * * *".to_owned());
    scheduler
        .add(jobs.annotated_job(&schedule, minute_report)?)
        .await?;
    scheduler.start().await?;

    tokio::signal::ctrl_c().await?;
    scheduler.shutdown().await?; // no more ticks; runs in progress cancelled, locks given back
    SchedulerLock::shutdown().await; // gives back the job scopes this process owns, if any
    Ok(())
}
