//! `shedlock::cron::LockedJobs`: a bad cron expression is refused when the
//! job is made, and a scheduler stopped in the middle of a run gives its lock
//! back (after `lock_at_least_for`, long before `lock_at_most_for`), on
//! memory and on Redis; before `shutdown()` returns, so a process that drops
//! its runtime right after it leaves no lock held (worker processes: this
//! test binary again, running only `shutdown_then_drop_the_runtime`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shedlock::admin::LockAdmin;
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock::{InMemoryLockProvider, LockConfiguration, LockError, LockProvider};
use shedlock_test_support::Worker;
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

/// A scheduler whose job (made as `made`) is [`STOP_AFTER`] into its first
/// run, holding the lock: started with its jobs stopping at its shutdown.
struct MidRun {
    scheduler: JobScheduler,
    jobs: LockedJobs,
    probe: Probe,
    /// When the run started.
    started: Instant,
}

impl MidRun {
    async fn start(provider: &Arc<dyn LockProvider>, made: Made) -> anyhow::Result<MidRun> {
        let probe = Probe::default();
        let mut scheduler = JobScheduler::new().await?;
        let jobs = LockedJobs::stopping_with(&mut scheduler);
        scheduler.add(made.job(&jobs, provider, &probe)?).await?;
        scheduler.start().await?;
        tokio::time::timeout(Duration::from_secs(5), probe.started.notified())
            .await
            .context("the job did not start within 5 s")?;
        let started = Instant::now();
        tokio::time::sleep(STOP_AFTER).await;
        ensure!(
            !is_free(&**provider).await?,
            "{made:?}: the lock is not held while the job runs"
        );
        Ok(MidRun {
            scheduler,
            jobs,
            probe,
            started,
        })
    }
}

/// Starts a scheduler with the job, stops it [`STOP_AFTER`] into the first
/// run, and checks that the run was cancelled and the lock given back: not
/// before `lock_at_least_for` has passed since the run started, and within
/// a second after that, where `lock_at_most_for` is 30 s.
async fn stopped_mid_run(provider: Arc<dyn LockProvider>, made: Made) -> anyhow::Result<()> {
    let MidRun {
        mut scheduler,
        jobs,
        probe,
        started,
    } = MidRun::start(&provider, made).await?;
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

const WORKER: &str = "shutdown_then_drop_the_runtime";
const WORKER_URL_ENV: &str = "SHEDLOCK_CRON_SHUTDOWN_REDIS_URL";
const WORKER_MADE_ENV: &str = "SHEDLOCK_CRON_SHUTDOWN_MADE";

impl Made {
    /// How a worker process is told which job to make.
    fn to_env(self) -> &'static str {
        match self {
            Made::Locked { .. } => "locked",
            Made::Annotated => "annotated",
        }
    }

    fn from_env(made: &str) -> anyhow::Result<Made> {
        match made {
            "locked" => Ok(Made::Locked {
                lock_at_least_for: LOCK_AT_LEAST_FOR,
            }),
            "annotated" => Ok(Made::Annotated),
            other => bail!("unknown kind of job {other:?}"),
        }
    }
}

/// A worker process runs the job on Redis, shuts its scheduler down in the
/// middle of a run and drops its runtime at once, as a `main` returning
/// right after `shutdown()` does. Once it has exited, nothing it left to do
/// can happen any more: the lock must be free by `lock_at_least_for` (not
/// held until `lock_at_most_for`, 30 s), and the run recorded as cancelled.
async fn shutdown_gives_the_lock_back_before_the_runtime_goes(made: Made) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let worker = Worker::spawn(
        WORKER,
        &[
            (WORKER_URL_ENV, server.url()),
            (WORKER_MADE_ENV, made.to_env()),
        ],
    );
    let (status, output) = worker.finish(Duration::from_secs(30)).await;
    println!("{output}");
    ensure!(
        status.is_some_and(|status| status.success()) && output.contains("shut down"),
        "{made:?}: the worker did not shut down cleanly: {status:?}"
    );

    let exited = Instant::now();
    let locks = RedisLockProvider::connect(server.url())
        .await?
        .with_run_history(true);
    while !is_free(&locks).await? {
        if exited.elapsed() > made.lock_at_least_for() + Duration::from_secs(5) {
            let state = locks.lock_state(LOCK).await?;
            bail!(
                "{made:?}: the lock is still held 5 s past lock_at_least_for after its process \
                 exited: {state:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes: Vec<_> = locks
        .run_history(LOCK)
        .await?
        .iter()
        .map(|run| run.outcome.as_str())
        .collect();
    ensure!(
        outcomes == ["cancelled"],
        "{made:?}: the stopped run is recorded as {outcomes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_jobs_lock_is_given_back_before_shutdown_returns() -> anyhow::Result<()> {
    let made = Made::Locked {
        lock_at_least_for: LOCK_AT_LEAST_FOR,
    };
    shutdown_gives_the_lock_back_before_the_runtime_goes(made).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_jobs_lock_is_given_back_before_shutdown_returns() -> anyhow::Result<()> {
    shutdown_gives_the_lock_back_before_the_runtime_goes(Made::Annotated).await
}

/// The worker: a `main` that runs the job on a scheduler, shuts it down in
/// the middle of a run and drops its runtime right after. Does nothing when
/// run as a plain (ignored) test.
#[test]
#[ignore = "a worker process of the tests that drop their runtime right after shutdown"]
fn shutdown_then_drop_the_runtime() -> anyhow::Result<()> {
    let (Ok(url), Ok(made)) = (
        std::env::var(WORKER_URL_ENV),
        std::env::var(WORKER_MADE_ENV),
    ) else {
        return Ok(());
    };
    let made = Made::from_env(&made)?;
    // What `#[tokio::main]` builds.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let locks = RedisLockProvider::connect(&url)
            .await?
            .with_run_history(true);
        let provider: Arc<dyn LockProvider> = Arc::new(locks);
        let mut mid_run = MidRun::start(&provider, made).await?;
        mid_run.scheduler.shutdown().await?;
        println!("{made:?}: shut down");
        anyhow::Ok(())
    })?;
    // As `main` returning: the runtime goes, with any task it still had.
    drop(runtime);
    Ok(())
}
