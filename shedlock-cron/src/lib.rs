//! [tokio-cron-scheduler](tokio_cron_scheduler) jobs that run under a
//! shedlock lock: every replica schedules the job, one of them runs each
//! tick, and a stopped scheduler gives the locks of its runs in progress back.
//!
//! Applications use this crate as `shedlock::cron` (feature `cron`).
//!
//! See [`LockedJobs`].

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod outcome;
mod schedule;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

// The attribute's way to note a run's outcome, which the executor cannot
// read from a generic output: one mechanism for both (same workspace version).
use shedlock_core::private::{ProviderProbe, note_outcome, probe_provider};
use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockMode, LockProvider, LockingTaskExecutor,
    MissedBetween, run_for_tick, track_releases,
};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

pub use outcome::JobOutput;
use outcome::{Outcome, run_outcome};
use schedule::{Ticks, cron_job};
/// The tokio-cron-scheduler these jobs are made for: its `Job` and
/// `JobScheduler` are the ones this crate takes and returns.
pub use tokio_cron_scheduler;

/// Makes locked jobs for a [`JobScheduler`], and stops their runs with it.
///
/// Each job made here runs its tick only while holding its lock; on the
/// replicas that find the lock held, the tick is skipped. One `LockedJobs`
/// goes with one scheduler: stopping it ([`stop`](Self::stop), or the
/// scheduler's shutdown with [`stopping_with`](Self::stopping_with)) cancels
/// the runs in progress of every job it made, gives their locks back, and
/// lets no later tick run.
///
/// tokio-cron-scheduler itself lets a run go on after `shutdown()`, holding
/// its lock until the job ends; that is why jobs are made here, and not
/// with `Job::new_async` around a [`LockingTaskExecutor`].
///
/// Clones share the same runs: stopping one stops them all.
///
/// ```
/// use std::time::Duration;
/// use shedlock::cron::LockedJobs;
/// use shedlock::{InMemoryLockProvider, LockConfiguration, scheduler_lock};
/// use tokio_cron_scheduler::JobScheduler;
///
/// static LOCKS: std::sync::LazyLock<InMemoryLockProvider> =
///     std::sync::LazyLock::new(InMemoryLockProvider::new);
///
/// async fn clean_up() -> Result<(), std::io::Error> {
///     Ok(())
/// }
///
/// #[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m", provider = &*LOCKS)]
/// async fn nightly_report() -> Result<(), String> {
///     Ok(())
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // With the `redis` feature, every replica would connect to one Redis:
/// // `shedlock::redis::RedisLockProvider::connect(url).await?`.
/// let provider = LOCKS.clone();
/// let mut scheduler = JobScheduler::new().await?;
/// let jobs = LockedJobs::stopping_with(&mut scheduler);
///
/// let cleanup = LockConfiguration::new("cleanup", Duration::from_secs(60), Duration::from_secs(1))?;
/// scheduler.add(jobs.locked_job("*/10 * * * * *", provider, cleanup, clean_up)?).await?;
/// scheduler.add(jobs.annotated_job("0 0 3 * * *", nightly_report)?).await?;
/// scheduler.start().await?;
///
/// // At the end: runs in progress are cancelled and their locks given back.
/// scheduler.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// Each tick is logged: a skip (the lock is held elsewhere) at `debug`, a
/// lock that could not be taken (the store failed) and a job that returned an
/// error at `warn`, each with the lock's name (`lock`, where the job gives it)
/// and the cron expression (`schedule`).
#[derive(Clone, Debug, Default)]
pub struct LockedJobs {
    stop: CancellationToken,
    runs: TaskTracker,
    /// `misfire = run_once`: how far back a missed tick is run when a job is made.
    catch_up: Option<Duration>,
}

impl LockedJobs {
    /// Jobs stopped only by [`stop`](Self::stop).
    pub fn new() -> Self {
        Self::default()
    }

    /// These jobs, and those made from the result catch up on a missed tick
    /// (misfire "run once"): when such a job is made (at startup), if its
    /// schedule's latest instant before now is at most `within` ago and no
    /// replica has claimed it or a later tick, the job runs once at once
    /// for it. The run claims that tick, so only one replica runs it
    /// however many start together; one that finds it claimed (it ran, or
    /// another replica caught up first) skips. Earlier missed ticks are only
    /// reported (the tick's claim reports them as missed). A job of a shared
    /// lock claims no ticks and does not catch up. Needs a Tokio runtime
    /// when the job is made; without one, a `warn` event says the catch-up
    /// did not run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shedlock::cron::LockedJobs;
    ///
    /// // An hourly job whose replicas were all down at the hour: the first
    /// // replica started within 15 minutes runs it once at once.
    /// let jobs = LockedJobs::new().catching_up(Duration::from_secs(15 * 60));
    /// ```
    pub fn catching_up(&self, within: Duration) -> Self {
        LockedJobs {
            catch_up: Some(within),
            ..self.clone()
        }
    }

    /// Jobs stopped when `scheduler` shuts down: this sets the scheduler's
    /// shutdown handler, so that `scheduler.shutdown().await` returns once the
    /// runs in progress are cancelled and their locks given back.
    ///
    /// The handler belongs to this `JobScheduler` value and to clones made
    /// after this call; a handler set later replaces it. To run shutdown code
    /// of your own too, make the jobs with [`new`](Self::new) and call
    /// [`stop`](Self::stop) from your handler.
    pub fn stopping_with(scheduler: &mut JobScheduler) -> Self {
        let jobs = Self::new();
        let on_shutdown = jobs.clone();
        scheduler.set_shutdown_handler(Box::new(move || {
            let jobs = on_shutdown.clone();
            Box::pin(async move { jobs.stop().await })
        }));
        jobs
    }

    /// A job that runs `job` on each tick of `schedule`, while holding the
    /// lock `config` describes, taken from `provider`, as
    /// [`LockingTaskExecutor::execute`] does: where the lock is held
    /// elsewhere, the tick is skipped; the lock is released when the run
    /// ends, kept until `lock_at_least_for` has passed.
    ///
    /// `job` returns `()` or a `Result` (see [`JobOutput`]); an error is
    /// logged, and the run recorded as an error in the lock's run history
    /// ([`RunOutcome::Error`](shedlock_core::RunOutcome::Error)).
    /// `schedule` is a cron expression with seconds, as tokio-cron-scheduler
    /// reads it (`sec min hour day-of-month month day-of-week [year]`, UTC).
    ///
    /// When the jobs are stopped during a run, `job`'s future is dropped and
    /// the lock released before [`stop`](Self::stop) returns, honouring
    /// `lock_at_least_for`; the run is recorded as
    /// [`Cancelled`](shedlock_core::RunOutcome::Cancelled).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`], naming the expression and what is
    /// wrong with it, when `schedule` is not a valid cron expression.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shedlock::cron::LockedJobs;
    /// use shedlock::{InMemoryLockProvider, LockConfiguration};
    ///
    /// # fn main() -> Result<(), shedlock::LockError> {
    /// let config = LockConfiguration::new("cleanup", Duration::from_secs(60), Duration::ZERO)?;
    /// let jobs = LockedJobs::new();
    /// let cleanup = jobs.locked_job("0 */5 * * * *", InMemoryLockProvider::new(), config.clone(), || async {
    ///     shedlock::assert_locked();
    /// })?;
    ///
    /// // Five fields: tokio-cron-scheduler wants seconds first.
    /// let refused = jobs
    ///     .locked_job("*/5 * * * *", InMemoryLockProvider::new(), config, || async {})
    ///     .err()
    ///     .map(|err| err.to_string());
    /// assert!(refused.is_some_and(|err| err.contains("'*/5 * * * *'")));
    /// # Ok(()) }
    /// ```
    pub fn locked_job<P, F, Fut>(
        &self,
        schedule: &str,
        provider: P,
        config: LockConfiguration,
        job: F,
    ) -> Result<Job, LockError>
    where
        P: LockProvider,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: JobOutput + Send,
    {
        let executor = Arc::new(LockingTaskExecutor::new(provider));
        let (config, job) = (Arc::new(config), Arc::new(job));
        let jobs = self.clone();
        let shown: Arc<str> = schedule.into();
        let ticks = Ticks::of(schedule);
        let exclusive = config.mode() == LockMode::Exclusive;
        let catch_up = ticks.clone().filter(|_| exclusive);
        self.catching_up_on(schedule, catch_up, move || {
            let (jobs, executor) = (jobs.clone(), executor.clone());
            let (job, schedule) = (job.clone(), shown.clone());
            // The tick this run fires for, claimed with the lock (an
            // exclusive one: shared holders take their permits as usual).
            let tick = ticks
                .as_ref()
                .filter(|_| exclusive)
                .map(|ticks| (ticks.tick_at(SystemTime::now()), ticks.missed_between()));
            let config = match &tick {
                Some((tick, _)) => Arc::new(config.as_ref().clone().for_tick(*tick)),
                None => config.clone(),
            };
            let run = track_releases(jobs.release_spawner(), async move {
                let lock = Some(config.name());
                let Some(_run) = jobs.begin() else {
                    return Outcome::<()>::AfterStop.log(lock, &schedule);
                };
                // Cancelled inside the lock, so the executor still releases
                // it; the run's outcome is noted for the lock's history.
                let run = async {
                    let output = tokio::select! {
                        biased;
                        () = jobs.stop.cancelled() => None,
                        output = job() => Some(output),
                    };
                    note_outcome(run_outcome(output.as_ref()));
                    output
                };
                let outcome = match executor.execute(&*config, run).await {
                    Ok(Some(Some(output))) => Outcome::Ran(output),
                    Ok(Some(None)) => Outcome::Stopped,
                    Ok(None) => Outcome::Skipped,
                    Err(err) => Outcome::Failed(err),
                };
                outcome.log(lock, &schedule);
            });
            for_tick(tick, run)
        })
    }

    /// A job that calls `job`, a `#[scheduler_lock]` function, on each tick
    /// of `schedule`: the function takes its lock (from its `provider = ..`
    /// or the installed default) and gives `Ok(None)` when it is held
    /// elsewhere. Anything returning what such a function returns,
    /// `Result<Option<T>, LockError>`, will do, a closure calling one with
    /// arguments for instance.
    ///
    /// The outcome is logged as for [`locked_job`](Self::locked_job), without
    /// the lock's name, which only the function knows. When the jobs are
    /// stopped during a run, the function's future is dropped, as for any
    /// cancelled locked call: its lock is given back (kept until
    /// `lock_at_least_for` has passed) before [`stop`](Self::stop) returns,
    /// and the run recorded as
    /// [`Cancelled`](shedlock_core::RunOutcome::Cancelled).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`], naming the expression and what is
    /// wrong with it, when `schedule` is not a valid cron expression; and,
    /// with the fix in its message, when no `SchedulerLock` is installed
    /// and the function takes its lock from the installed default (no
    /// `provider = ..`): such a job would never run. To learn that, `job` is
    /// called once when no default is installed, and its future polled to
    /// the function's lock step, which goes no further: the function's body
    /// does not run and no lock is taken (in a closure, code before the
    /// call runs, code after it does not).
    ///
    /// ```
    /// use shedlock::cron::LockedJobs;
    /// use shedlock::{InMemoryLockProvider, scheduler_lock};
    ///
    /// static LOCKS: std::sync::LazyLock<InMemoryLockProvider> =
    ///     std::sync::LazyLock::new(InMemoryLockProvider::new);
    ///
    /// #[scheduler_lock(name = "report-{region}", lock_at_most_for = "10m", provider = &*LOCKS)]
    /// async fn report(region: &str) -> Result<u32, String> {
    ///     Ok(1)
    /// }
    ///
    /// # fn main() -> Result<(), shedlock::LockError> {
    /// let jobs = LockedJobs::new();
    /// let europe = jobs.annotated_job("0 0 * * * *", || report("europe"))?;
    /// let asia = jobs.annotated_job("0 30 * * * *", || async { report("asia").await })?;
    /// # Ok(()) }
    /// ```
    pub fn annotated_job<F, Fut, T>(&self, schedule: &str, job: F) -> Result<Job, LockError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<T>, LockError>> + Send + 'static,
        T: JobOutput,
    {
        if shedlock_core::SchedulerLock::installed().is_none() {
            match probe_provider(&job) {
                ProviderProbe::Own => {}
                ProviderProbe::Default => {
                    return Err(LockError::InvalidConfiguration(format!(
                        "the annotated job on '{schedule}' takes its lock from the installed \
                         default provider, and none is installed: install one with \
                         SchedulerLock::builder(provider).install() before making the jobs, \
                         or give the attribute `provider = ..`"
                    )));
                }
                // The call was not reached in one poll: it may still fail at
                // every tick, so say so now.
                ProviderProbe::Unknown => tracing::error!(
                    %schedule,
                    "annotated job made with no SchedulerLock installed: a #[scheduler_lock] \
                     function without `provider = ..` will not run; install one with \
                     SchedulerLock::builder(provider).install() before making the jobs"
                ),
            }
        }
        let job = Arc::new(job);
        let jobs = self.clone();
        let shown: Arc<str> = schedule.into();
        let ticks = Ticks::of(schedule);
        self.catching_up_on(schedule, ticks.clone(), move || {
            let (jobs, job, schedule) = (jobs.clone(), job.clone(), shown.clone());
            // The tick this run fires for: the function claims it (see `run_for_tick`).
            let tick = ticks
                .as_ref()
                .map(|ticks| (ticks.tick_at(SystemTime::now()), ticks.missed_between()));
            // A run stopped mid-way gives its lock back on a task of `runs`.
            let run = track_releases(jobs.release_spawner(), async move {
                let Some(_run) = jobs.begin() else {
                    return Outcome::<()>::AfterStop.log(None, &schedule);
                };
                let outcome = tokio::select! {
                    biased;
                    () = jobs.stop.cancelled() => Outcome::Stopped,
                    result = job() => match result {
                        Ok(Some(output)) => Outcome::Ran(output),
                        Ok(None) => Outcome::Skipped,
                        Err(err) => Outcome::Failed(err),
                    },
                };
                outcome.log(None, &schedule);
            });
            for_tick(tick, run)
        })
    }

    /// Stops the jobs made here: cancels their runs in progress, and returns
    /// once those have ended and given their locks back (a lock within
    /// `lock_at_least_for` of its acquisition is kept until then, as an
    /// unlock always does), so a runtime dropped right after this leaves no
    /// lock held. Ticks after this do not run.
    ///
    /// A run's lock is given back in one attempt, as at the end of any run;
    /// a guard a job dropped is released with retries, until the store
    /// answers or its lease would have ended, and waited for too. A lease
    /// that an acquisition cut short may have taken (its answer not awaited)
    /// is looked for in the background, not waited for.
    ///
    /// Stopping does not stop the scheduler: call `JobScheduler::shutdown`
    /// too, or let it call this (see [`stopping_with`](Self::stopping_with)).
    pub async fn stop(&self) {
        self.stop.cancel();
        self.runs.close();
        if !self.runs.is_empty() {
            tracing::debug!(
                runs = self.runs.len(),
                "cron jobs stopping: cancelling their runs in progress"
            );
        }
        self.runs.wait().await;
    }

    /// Whether the jobs were stopped.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The job running `fire()` on each tick of `schedule`; with
    /// [`catching_up`](Self::catching_up), also once now, when the
    /// schedule's latest instant (`ticks`: `None` when none is claimed) is
    /// recent enough: `fire` claims the latest instant at or before the
    /// clock, so this run is that tick's.
    fn catching_up_on<F, Fut>(
        &self,
        schedule: &str,
        ticks: Option<Ticks>,
        fire: F,
    ) -> Result<Job, LockError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fire = Arc::new(fire);
        let job = {
            let fire = fire.clone();
            cron_job(schedule, move || fire())?
        };
        let (Some(within), Some(ticks)) = (self.catch_up, ticks) else {
            return Ok(job);
        };
        let now = SystemTime::now();
        let missed = ticks.tick_at(now);
        if now.duration_since(missed).is_ok_and(|ago| ago <= within) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    tracing::debug!(%schedule, tick = ?missed, "catching up on the schedule's last tick");
                    drop(runtime.spawn(fire()));
                }
                Err(_) => tracing::warn!(
                    %schedule,
                    "the catch-up of a missed tick needs a Tokio runtime when the job is made; \
                     it did not run"
                ),
            }
        }
        Ok(job)
    }

    /// Spawns, as runs [`stop`](Self::stop) waits for, the releases a tick
    /// leaves to the background (see [`track_releases`]).
    fn release_spawner(&self) -> impl Fn(BoxFuture<'static, ()>) + Send + Sync + use<> {
        let runs = self.runs.clone();
        move |release| drop(runs.spawn(release))
    }

    /// Counts a tick's run until it ends, so that [`stop`](Self::stop) waits
    /// for it; `None` once stopped. Counted before the check, so a `stop`
    /// that does not wait for the run has cancelled it first.
    fn begin(&self) -> Option<TaskTrackerToken> {
        let run = self.runs.token();
        (!self.stop.is_cancelled()).then_some(run)
    }
}

/// `run` as the run of `tick` (with its schedule's count of missed ticks),
/// or as it is when the schedule's instants are not known.
async fn for_tick<F: Future>(tick: Option<(SystemTime, MissedBetween)>, run: F) -> F::Output {
    match tick {
        Some((tick, missed_between)) => run_for_tick(tick, missed_between, run).await,
        None => run.await,
    }
}
