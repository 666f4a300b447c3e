//! `shedlock::cron::LockedJobs`: a bad cron expression is refused when the
//! job is made, and a scheduler stopped in the middle of a run gives its lock
//! back (after `lock_at_least_for`, long before `lock_at_most_for`), on
//! memory and on Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock::{InMemoryLockProvider, LockConfiguration, LockError, LockProvider};
use shedlock_test_support::redis::RedisServer;
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};

const EVERY_SECOND: &str = "*/1 * * * * *";
const LOCK: &str = "cron-long-job";
const LOCK_AT_MOST_FOR: Duration = Duration::from_secs(30);
/// What the attribute of `annotated_long_job` says too.
const LOCK_AT_LEAST_FOR: Duration = Duration::from_secs(1);
/// How long a job would run if nothing stopped it.
const JOB_LENGTH: Duration = Duration::from_secs(60);
/// How long the scheduler runs after the job started, before it is stopped.
const STOP_AFTER: Duration = Duration::from_millis(200);

#[test]
fn a_bad_cron_expression_is_refused_naming_it() {
    let jobs = LockedJobs::new();
    let config = || LockConfiguration::new(LOCK, LOCK_AT_MOST_FOR, Duration::ZERO);
    for schedule in ["61 * * * * *", "*/5 * * * *", "every minute", ""] {
        let locked = config().and_then(|config| {
            jobs.locked_job(schedule, InMemoryLockProvider::new(), config, || async {})
        });
        let annotated = jobs.annotated_job(schedule, || async { Ok(Some(())) });
        for made in [locked, annotated] {
            match made {
                Err(LockError::InvalidConfiguration(message)) => {
                    println!("{message}");
                    assert!(
                        message.contains(&format!("cron expression '{schedule}'")),
                        "{message}"
                    );
                }
                Err(other) => panic!("{schedule:?}: not InvalidConfiguration: {other}"),
                Ok(_) => panic!("{schedule:?} was accepted"),
            }
        }
    }
}

/// What a long job tells the test: how often it started, and whether it
/// finished or its future was dropped.
#[derive(Clone, Default)]
struct Probe {
    starts: Arc<AtomicUsize>,
    started: Arc<Notify>,
    finished: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

/// Marks the job's future dropped, however it ends.
struct DropMark(Arc<AtomicBool>);

impl Drop for DropMark {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    /// A job that runs for [`JOB_LENGTH`] unless stopped.
    async fn long_job(self) {
        let _dropped = DropMark(self.dropped.clone());
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.started.notify_one();
        tokio::time::sleep(JOB_LENGTH).await;
        self.finished.store(true, Ordering::SeqCst);
    }
}

#[shedlock::scheduler_lock(name = "cron-long-job", lock_at_most_for = "30s", lock_at_least_for = "1s", provider = provider)]
async fn annotated_long_job(provider: &Arc<dyn LockProvider>, probe: Probe) {
    probe.long_job().await;
}

/// How the job under test is made.
#[derive(Clone, Copy, Debug)]
enum Made {
    /// `locked_job` with a configuration keeping the lock this long at least.
    Locked { lock_at_least_for: Duration },
    /// `annotated_job` with `annotated_long_job` (lock_at_least_for 1 s).
    Annotated,
}

impl Made {
    fn lock_at_least_for(self) -> Duration {
        match self {
            Made::Locked { lock_at_least_for } => lock_at_least_for,
            Made::Annotated => LOCK_AT_LEAST_FOR,
        }
    }

    fn job(
        self,
        jobs: &LockedJobs,
        provider: &Arc<dyn LockProvider>,
        probe: &Probe,
    ) -> anyhow::Result<Job> {
        let (provider, probe) = (provider.clone(), probe.clone());
        Ok(match self {
            Made::Locked { lock_at_least_for } => {
                let config = LockConfiguration::new(LOCK, LOCK_AT_MOST_FOR, lock_at_least_for)?;
                jobs.locked_job(EVERY_SECOND, provider, config, move || {
                    probe.clone().long_job()
                })?
            }
            Made::Annotated => jobs.annotated_job(EVERY_SECOND, move || {
                let (provider, probe) = (provider.clone(), probe.clone());
                async move { annotated_long_job(&provider, probe).await }
            })?,
        })
    }
}

/// Starts a scheduler with the job, stops it [`STOP_AFTER`] into the first
/// run, and checks that the run was cancelled and the lock given back: not
/// before `lock_at_least_for` has passed since the run started, and within
/// a second after that, where `lock_at_most_for` is 30 s.
async fn stopped_mid_run(provider: Arc<dyn LockProvider>, made: Made) -> anyhow::Result<()> {
    let probe = Probe::default();
    let mut scheduler = JobScheduler::new().await?;
    let jobs = LockedJobs::stopping_with(&mut scheduler);
    scheduler.add(made.job(&jobs, &provider, &probe)?).await?;
    scheduler.start().await?;

    tokio::time::timeout(Duration::from_secs(5), probe.started.notified())
        .await
        .context("the job did not start within 5 s")?;
    let started = Instant::now();
    tokio::time::sleep(STOP_AFTER).await;
    ensure!(
        !is_free(&*provider).await?,
        "{made:?}: the lock is not held while the job runs"
    );
    tokio::time::timeout(Duration::from_secs(5), scheduler.shutdown())
        .await
        .context("the scheduler's shutdown did not end within 5 s")??;
    let stopped = started.elapsed();
    ensure!(
        jobs.is_stopped(),
        "{made:?}: shutdown did not stop the jobs"
    );
    ensure!(
        probe.dropped.load(Ordering::SeqCst) && !probe.finished.load(Ordering::SeqCst),
        "{made:?}: the run was not cancelled by the shutdown"
    );

    let free_after = loop {
        if is_free(&*provider).await? {
            break started.elapsed();
        }
        if started.elapsed() > made.lock_at_least_for() + Duration::from_secs(5) {
            bail!("{made:?}: the lock was still held 5 s after lock_at_least_for");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("{made:?}: stopped {stopped:?} and lock free {free_after:?} after the run started");
    // The run started a moment after its acquisition: allow for that.
    ensure!(
        free_after + Duration::from_millis(50) >= made.lock_at_least_for(),
        "{made:?}: the lock was free {free_after:?} after the run started, before lock_at_least_for"
    );
    ensure!(
        free_after < made.lock_at_least_for().max(stopped) + Duration::from_secs(1),
        "{made:?}: the lock was free only {free_after:?} after the run started"
    );
    Ok(())
}

/// Whether the lock is free: taken and given back at once if so.
async fn is_free(provider: &dyn LockProvider) -> anyhow::Result<bool> {
    let probe = LockConfiguration::new(LOCK, Duration::from_secs(5), Duration::ZERO)?;
    match provider.try_lock(&probe).await? {
        Some(guard) => {
            guard.unlock().await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn memory() -> Arc<dyn LockProvider> {
    Arc::new(InMemoryLockProvider::new())
}

async fn redis(server: &RedisServer) -> anyhow::Result<Arc<dyn LockProvider>> {
    Ok(Arc::new(RedisLockProvider::connect(server.url()).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_gives_a_runs_lock_back_before_it_returns() -> anyhow::Result<()> {
    let provider = memory();
    let probe = Probe::default();
    let mut scheduler = JobScheduler::new().await?;
    let jobs = LockedJobs::stopping_with(&mut scheduler);
    let made = Made::Locked {
        lock_at_least_for: Duration::ZERO,
    };
    scheduler.add(made.job(&jobs, &provider, &probe)?).await?;
    scheduler.start().await?;
    tokio::time::timeout(Duration::from_secs(5), probe.started.notified())
        .await
        .context("the job did not start within 5 s")?;
    tokio::time::sleep(STOP_AFTER).await;

    scheduler.shutdown().await?;
    assert!(
        is_free(&*provider).await?,
        "the lock is still held when shutdown returns"
    );
    // The scheduler may still fire a tick it had due; it does not run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(probe.starts.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_scheduler_gives_the_lock_back_after_lock_at_least_for_in_memory()
-> anyhow::Result<()> {
    let made = Made::Locked {
        lock_at_least_for: LOCK_AT_LEAST_FOR,
    };
    stopped_mid_run(memory(), made).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_scheduler_gives_the_lock_back_after_lock_at_least_for_on_redis()
-> anyhow::Result<()> {
    let server = RedisServer::start();
    let made = Made::Locked {
        lock_at_least_for: LOCK_AT_LEAST_FOR,
    };
    stopped_mid_run(redis(&server).await?, made).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_scheduler_gives_an_annotated_jobs_lock_back_in_memory() -> anyhow::Result<()> {
    stopped_mid_run(memory(), Made::Annotated).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_scheduler_gives_an_annotated_jobs_lock_back_on_redis() -> anyhow::Result<()> {
    let server = RedisServer::start();
    stopped_mid_run(redis(&server).await?, Made::Annotated).await
}
