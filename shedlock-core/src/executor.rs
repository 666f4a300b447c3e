//! `LockingTaskExecutor`: runs a future while holding a lock, or skips it,
//! waits for it, keeps it alive, and tells the future when it is lost.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::context::{ActiveLock, HeldLocks};
use crate::metrics::{self, Attempt, LockLabel};
use crate::provider::Waiter;
use crate::scopes::ScopeRun;
use crate::{
    FinishedRun, LockConfiguration, LockError, LockGuard, LockMode, LockProvider, RunOutcome,
};

/// The first pause of a waiter that gets no release notification; it doubles
/// up to [`MAX_POLL_INTERVAL`]. Notifications wake waiters sooner.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between two attempts of a waiter.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a waiting exclusive holder keeps its place in the queue after an
/// attempt (it tries again at least every [`MAX_POLL_INTERVAL`]), so a waiter
/// that dies blocks shared holders this long at most.
const HOLD_PLACE_FOR: Duration = Duration::from_secs(2);
/// How soon keep-alive retries an extension that failed on a store error.
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(100);

/// How [`LockingTaskExecutor::execute_with`] takes and keeps a lock.
///
/// ```
/// use std::time::Duration;
/// use shedlock_core::ExecutionOptions;
///
/// let options = ExecutionOptions::new()
///     .wait_for(Duration::from_secs(300)) // wait up to 5 minutes instead of skipping
///     .keep_alive(true)                   // extend the lease while the job runs
///     .cancel_on_lease_loss(true);        // stop the job if the lease is lost anyway
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionOptions {
    when_held: WhenHeld,
    keep_alive: bool,
    cancel_on_lease_loss: bool,
}

/// What a call does when the lock is held elsewhere: one choice, so options
/// can never ask for two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenHeld {
    /// Return `Ok(None)` at once: ShedLock's behaviour.
    #[default]
    Skip,
    /// Wait up to this long and run as soon as the lock is free; waiters
    /// wake on the release itself where the provider supports it (Redis,
    /// memory, PostgreSQL in one process), and poll with backoff otherwise.
    Wait(Duration),
    /// Try `retries` more times, `retry_wait` apart (an enterprise lock
    /// service's `getLock(name, ttl, retryWait, retryCount)`).
    Retry {
        /// Attempts after the first.
        retries: u32,
        /// The pause between two attempts.
        retry_wait: Duration,
    },
}

impl ExecutionOptions {
    /// Skip when the lock is held, no keep-alive: ShedLock's behaviour.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do when the lock is held: skip (the default), wait, or retry.
    pub fn when_held(mut self, when_held: WhenHeld) -> Self {
        self.when_held = when_held;
        self
    }

    /// Shorthand for [`WhenHeld::Wait`]: when the lock is held, wait up to
    /// `wait_for` for it and run as soon as it is free.
    pub fn wait_for(self, wait_for: Duration) -> Self {
        self.when_held(WhenHeld::Wait(wait_for))
    }

    /// Shorthand for [`WhenHeld::Retry`]: when the lock is held, try
    /// `retries` more times, `retry_wait` apart.
    pub fn retry(self, retries: u32, retry_wait: Duration) -> Self {
        self.when_held(WhenHeld::Retry {
            retries,
            retry_wait,
        })
    }

    /// While the task runs, extend its lease every third of
    /// `lock_at_most_for`, so a short lease can protect a long job whose
    /// process stays alive. `lock_at_least_for` still counts from acquisition.
    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// When the lease is lost while the task runs (an extension fails, or the
    /// lease reaches its end), drop the task's future and return
    /// [`LockError::LeaseLost`]. Without it the task is only told
    /// ([`lease_lost`](crate::lease_lost)) and runs on.
    pub fn cancel_on_lease_loss(mut self, cancel: bool) -> Self {
        self.cancel_on_lease_loss = cancel;
        self
    }

    /// How long a held lock is waited for; `None`: not at all.
    pub(crate) fn waits_for(&self) -> Option<Duration> {
        match self.when_held {
            WhenHeld::Wait(wait_for) => Some(wait_for),
            WhenHeld::Retry {
                retries,
                retry_wait,
            } => Some(retry_wait.saturating_mul(retries)),
            WhenHeld::Skip => None,
        }
    }

    /// Whether a lost lease cancels the task.
    pub(crate) fn cancels_on_lease_loss(&self) -> bool {
        self.cancel_on_lease_loss
    }

    /// Whether something must watch the lease while the task runs.
    fn watches_lease(&self) -> bool {
        self.keep_alive || self.cancel_on_lease_loss
    }
}

/// Runs futures under locks taken from one provider.
///
/// ```
/// use std::time::Duration;
/// use shedlock_core::{InMemoryLockProvider, LockConfiguration, LockingTaskExecutor};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shedlock_core::LockError> {
/// let executor = LockingTaskExecutor::new(InMemoryLockProvider::new());
/// let config = LockConfiguration::new("report", Duration::from_secs(60), Duration::ZERO)?;
/// let ran = executor.execute(&config, async { 42 }).await?;
/// assert_eq!(ran, Some(42)); // None would mean: held elsewhere, skipped
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LockingTaskExecutor<P> {
    provider: P,
}

impl<P: LockProvider> LockingTaskExecutor<P> {
    /// An executor taking its locks from `provider`.
    pub fn new(provider: P) -> Self {
        LockingTaskExecutor { provider }
    }

    /// The provider locks are taken from.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Runs `task` while holding the lock `config` describes.
    ///
    /// - `Ok(Some(output))`: the lock was taken, `task` ran, the lock was released
    ///   (kept until `lock_at_least_for` has passed).
    /// - `Ok(None)`: the lock is held elsewhere; `task` did not run.
    /// - `Err(_)`: the store failed, or a nested call asked for more than its
    ///   task holds (below); `task` did not run.
    ///
    /// Reentrant: when the current task already holds a lock of the same name
    /// from the same provider scope, `task` runs directly, without a second
    /// acquisition, if that hold covers what `config` asks: exclusive covers
    /// shared and counted, and `n` permits cover `n` or fewer. The held lease is
    /// then made to last at least `config`'s `lock_at_most_for` from now and the
    /// lock kept at least its `lock_at_least_for` from now (extended in the store
    /// only when it would end sooner, never shortened); waiting, keep-alive and
    /// cancellation stay the outer call's. A hold that does not cover the call
    /// (shared when it asks exclusive, fewer permits than it asks) gives
    /// [`LockError::ReentrantUpgrade`] at once: taking more would wait on the
    /// task's own hold. A held lease found ended gives [`LockError::LeaseLost`].
    ///
    /// A panic in `task` releases the lock, then resumes. A call dropped
    /// while `task` runs (its caller cancelled it) gives the lock back in the
    /// background, as an `unlock` would, and records the run as
    /// [`Cancelled`](crate::RunOutcome::Cancelled).
    /// A failed release after the task ran is logged, not returned: the task's
    /// output is kept, and the lease ends at `lock_at_most_for` at the latest.
    ///
    /// The run history records a task that returned as `ok`, whatever its
    /// output: a task that returns a `Result` goes to
    /// [`execute_fallible`](Self::execute_fallible), which records an `Err`
    /// as `error`.
    pub async fn execute<F: Future>(
        &self,
        config: impl AsRef<LockConfiguration>,
        task: F,
    ) -> Result<Option<F::Output>, LockError> {
        run_locked(
            &self.provider,
            config.as_ref(),
            ExecutionOptions::new(),
            task,
        )
        .await
    }

    /// Like [`execute`](Self::execute), for a task that returns a `Result`:
    /// an `Err` is recorded in the run history (and counted) as
    /// [`RunOutcome::Error`](crate::RunOutcome::Error), as the attribute
    /// records it. [`execute`](Self::execute) takes a task of any output,
    /// which it cannot look into, so it records every run that returns as
    /// `ok`.
    pub async fn execute_fallible<F, T, E>(
        &self,
        config: impl AsRef<LockConfiguration>,
        task: F,
    ) -> Result<Option<Result<T, E>>, LockError>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.execute_fallible_with(config, ExecutionOptions::new(), task)
            .await
    }

    /// [`execute_fallible`](Self::execute_fallible) with waiting, retries,
    /// keep-alive and cancellation chosen by `options`, as
    /// [`execute_with`](Self::execute_with).
    pub async fn execute_fallible_with<F, T, E>(
        &self,
        config: impl AsRef<LockConfiguration>,
        options: ExecutionOptions,
        task: F,
    ) -> Result<Option<Result<T, E>>, LockError>
    where
        F: Future<Output = Result<T, E>>,
    {
        let task = async {
            let output = task.await;
            if output.is_err() {
                crate::context::note_outcome(crate::RunOutcome::Error);
            }
            output
        };
        run_locked(&self.provider, config.as_ref(), options, task).await
    }

    /// Like [`execute`](Self::execute), but waits up to `wait_for` for a held
    /// lock; `Ok(None)` only when `wait_for` has passed.
    pub async fn execute_waiting<F: Future>(
        &self,
        config: impl AsRef<LockConfiguration>,
        wait_for: Duration,
        task: F,
    ) -> Result<Option<F::Output>, LockError> {
        let options = ExecutionOptions::new().wait_for(wait_for);
        run_locked(&self.provider, config.as_ref(), options, task).await
    }

    /// Like [`execute`](Self::execute), with waiting, retries, keep-alive and
    /// cancellation chosen by `options`.
    ///
    /// With `cancel_on_lease_loss`, a lost lease gives `Err(LockError::LeaseLost)`
    /// and the task's future is dropped.
    pub async fn execute_with<F: Future>(
        &self,
        config: impl AsRef<LockConfiguration>,
        options: ExecutionOptions,
        task: F,
    ) -> Result<Option<F::Output>, LockError> {
        run_locked(&self.provider, config.as_ref(), options, task).await
    }

    /// Takes the lock, waiting up to `wait_for` when it is held. `Ok(None)`:
    /// still held when `wait_for` passed.
    pub async fn lock_waiting(
        &self,
        config: impl AsRef<LockConfiguration>,
        wait_for: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        lock_waiting(&self.provider, config.as_ref(), wait_for).await
    }

    /// Takes the lock, trying `retries` more times `retry_wait` apart when it
    /// is held. `Ok(None)`: still held after the last try.
    pub async fn lock_retrying(
        &self,
        config: impl AsRef<LockConfiguration>,
        retries: u32,
        retry_wait: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        lock_retrying(&self.provider, config.as_ref(), retries, retry_wait).await
    }
}

/// Takes the lock as `options` say: once, with retries, or waiting.
async fn acquire<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    options: &ExecutionOptions,
) -> Result<Option<LockGuard>, LockError> {
    match options.when_held {
        WhenHeld::Wait(wait_for) => lock_waiting(provider, config, wait_for).await,
        WhenHeld::Retry {
            retries,
            retry_wait,
        } => lock_retrying(provider, config, retries, retry_wait).await,
        WhenHeld::Skip => provider.try_lock(config).await,
    }
}

/// Tries until the lock is free or `wait_for` has passed. Wakes on the
/// provider's release notification; the backoff only covers a lost one.
async fn lock_waiting<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    wait_for: Duration,
) -> Result<Option<LockGuard>, LockError> {
    // No deadline when `wait_for` is too long to add to an instant: wait on.
    let deadline = Instant::now().checked_add(wait_for);
    // Watch before the first attempt: a release right after it still wakes us.
    let mut releases = provider.watch_releases(config.name()).await;
    let mut pause = FIRST_POLL_INTERVAL;
    let mut waiter = Waiter::new(HOLD_PLACE_FOR);
    loop {
        let left = deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        // A place in the queue never outlives the wait.
        waiter.set_hold_place_for(HOLD_PLACE_FOR.min(left).max(Duration::from_millis(1)));
        if let Some(guard) = provider.try_lock_waiting(config, &waiter).await? {
            return Ok(Some(guard));
        }
        let now = Instant::now();
        let left = deadline.map_or(MAX_POLL_INTERVAL, |deadline| {
            deadline.saturating_duration_since(now)
        });
        if left.is_zero() {
            tracing::debug!(lock = %config.name(), ?wait_for, "gave up waiting for lock");
            return Ok(None);
        }
        tracing::trace!(lock = %config.name(), "lock held elsewhere; waiting");
        let _ = tokio::time::timeout(pause.min(left), releases.released()).await;
        pause = (pause * 2).min(MAX_POLL_INTERVAL);
    }
}

async fn lock_retrying<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    retries: u32,
    retry_wait: Duration,
) -> Result<Option<LockGuard>, LockError> {
    // Between tries an exclusive caller keeps its place, as a waiter does.
    let mut waiter = Waiter::new(retry_wait.saturating_add(HOLD_PLACE_FOR));
    for retry in 0..=retries {
        if retry > 0 {
            tokio::time::sleep(retry_wait).await;
        }
        if retry == retries {
            // The last try: no place to keep for later.
            waiter.set_hold_place_for(Duration::from_millis(1));
        }
        let attempt = if retries == 0 {
            provider.try_lock(config).await?
        } else {
            provider.try_lock_waiting(config, &waiter).await?
        };
        if let Some(guard) = attempt {
            return Ok(Some(guard));
        }
    }
    Ok(None)
}

/// The executor's algorithm, shared with the attribute's expansion.
pub(crate) fn run_locked<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    config: &LockConfiguration,
    options: ExecutionOptions,
    task: F,
) -> impl Future<Output = Result<Option<F::Output>, LockError>> {
    let label = LockLabel::new(config, None);
    run_labelled(provider, config, label, options, task)
}

/// [`run_locked`], with `label` on its metrics (the attribute's name template).
///
/// A plain function returning the pipeline's future: an `async fn` layer
/// would keep its own copy of `task`, doubling the future's size at every
/// level of nested locked calls.
pub(crate) fn run_labelled<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    config: &LockConfiguration,
    label: LockLabel,
    options: ExecutionOptions,
    task: F,
) -> impl Future<Output = Result<Option<F::Output>, LockError>> {
    let take = async move {
        let guard = acquire(provider, config, &options).await?;
        Ok(guard.map(Hold::Lease))
    };
    run_held(provider.scope(), config, label, options, take, task)
}

/// What a run holds while its task runs.
pub(crate) enum Hold {
    /// A lease of its own, released after the run with its outcome.
    Lease(LockGuard),
    /// A place in a job scope this replica owns, left after the run; the
    /// scope's lease is its owner's to keep.
    Scope(ScopeRun),
}

/// The one run pipeline, for a lease and for a scope alike: a nested call on
/// a held lock runs on that hold; otherwise `take` gets the hold (`None`:
/// held elsewhere, skipped), and `task` runs under it beside a watcher that
/// marks the lease lost (cancelling the task when asked), then the hold is
/// given back.
pub(crate) async fn run_held<F: Future>(
    provider_scope: &str,
    config: &LockConfiguration,
    label: LockLabel,
    options: ExecutionOptions,
    take: impl Future<Output = Result<Option<Hold>, LockError>>,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    let held = HeldLocks::current();
    let name = config.name();
    if let Some(active) = held.find(provider_scope, name) {
        // Boxed: the nested task's future would otherwise take room in this
        // future beside the one it runs under a hold of its own.
        return run_nested(active, config, &label, Box::pin(task)).await;
    }
    tracing::debug!(lock = %name, "attempting lock");
    let attempt = Attempt::start(&label);
    let hold = match take.await {
        Ok(Some(hold)) => hold,
        Ok(None) => {
            tracing::debug!(lock = %name, "lock held elsewhere; skipping");
            attempt.skipped();
            return Ok(None);
        }
        Err(err) => {
            tracing::warn!(lock = %name, error = %err, "lock attempt failed; the task did not run");
            attempt.failed(&err);
            return Err(err);
        }
    };
    let execution = attempt.acquired();
    // The job runs inside a span, so its own log lines carry its lock.
    let span = tracing::info_span!(
        "scheduler_lock",
        lock = %name,
        fencing_token = tracing::field::Empty,
        mode = ?config.mode(),
        scope = tracing::field::Empty,
    );
    let (held, active, scope_run) = match hold {
        Hold::Lease(guard) => {
            let token = guard.info().issued_fencing_token();
            tracing::debug!(lock = %name, fencing_token = ?token, "lock acquired");
            if let Some(token) = token {
                span.record("fencing_token", token);
            }
            let (held, active) = held.with(guard, config.mode(), provider_scope, label.clone());
            (held, active, None)
        }
        Hold::Scope(run) => {
            tracing::debug!(lock = %name, scope = %run.scope(), term = run.term(), "running in owned scope");
            span.record("fencing_token", run.term());
            span.record("scope", run.scope());
            let (held, active) = held.with_kept(
                run.info(config),
                run.lost_signal(),
                config.mode(),
                provider_scope,
                label.clone(),
            );
            (held, active, Some(run))
        }
    };
    let started = Instant::now();
    // Declared before the task and its watcher, so dropped after them.
    let cancelled = CancelledRun {
        active: &active,
        started,
    };
    let task = pin!(held.scope(task.instrument(span)));
    // Returns once the lease is lost, marked so: a scope's owner signals
    // it; an own lease is watched when the options ask (keep-alive, cancel).
    let watcher = async {
        match &scope_run {
            Some(run) => {
                run.lost_signal().wait().await;
                active.mark_lost();
            }
            None => watch_lease(&active, options.keep_alive).await,
        }
    };
    let watched = scope_run.is_some() || options.watches_lease();
    let cancel = options.cancels_on_lease_loss();
    let outcome = run_watched(name, watched.then_some(cancel), task, watcher).await;
    cancelled.ended();
    execution.finish();
    // A scope's place is left here; a lease is released with the run's outcome.
    drop(scope_run);
    // Uncontended once the task is done, unless a keep-alive is mid-extension.
    let guard = match active.guard.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(_) => active.guard.lock().await.take(),
    };
    if let Some(guard) = guard {
        let run = FinishedRun {
            duration: started.elapsed(),
            outcome: match &outcome {
                _ if active.is_lost() => RunOutcome::LeaseLost,
                Some(Ok(_)) => active.noted_outcome().unwrap_or(RunOutcome::Ok),
                Some(Err(_)) => RunOutcome::Panic,
                None => RunOutcome::LeaseLost,
            },
            fencing_token: guard.info().issued_fencing_token(),
        };
        give_back(&active, guard, run).await;
    }
    match outcome {
        Some(Ok(output)) => Ok(Some(output)),
        Some(Err(panic)) => resume_unwind(panic),
        None => Err(LockError::LeaseLost {
            name: name.to_owned(),
        }),
    }
}

/// A run whose future may be dropped before its task ends (its caller
/// cancelled it: a timeout, a `select!`, a stopped cron job). Dropped so, it
/// takes the guard and gives the lease back in the background, recording
/// the run as cancelled; a run that ends says so with [`ended`](Self::ended).
struct CancelledRun<'a> {
    active: &'a Arc<ActiveLock>,
    started: Instant,
}

impl CancelledRun<'_> {
    /// The task ended: the pipeline gives the lease back itself.
    fn ended(self) {
        std::mem::forget(self);
    }
}

impl Drop for CancelledRun<'_> {
    fn drop(&mut self) {
        // Free: the task and the watcher, which may hold it across an
        // extension, were declared after this and dropped first. (Were it
        // busy, the guard's own drop would release it, unrecorded.)
        let Some(guard) = (self.active.guard.try_lock().ok()).and_then(|mut guard| guard.take())
        else {
            return;
        };
        let run = FinishedRun {
            duration: self.started.elapsed(),
            outcome: if self.active.is_lost() {
                RunOutcome::LeaseLost
            } else {
                RunOutcome::Cancelled
            },
            fencing_token: guard.info().issued_fencing_token(),
        };
        tracing::debug!(lock = %guard.name(), "locked run cancelled before its task ended; giving its lock back");
        let active = self.active.clone();
        let release = async move { give_back(&active, guard, run).await };
        // Without a runtime, the guard's drop says the lease is left to end.
        crate::release_tracking::spawn_release(release);
    }
}

/// Gives a run's lease back, recording `run` in the lock's history; a lease
/// found ended counts as lost, once per run (its watcher may have counted it).
async fn give_back(active: &ActiveLock, guard: LockGuard, run: FinishedRun) {
    // Errors are logged by the guard; the task's output is what the caller needs.
    if let Ok(false) = guard.release_after_run(run).await {
        active.found_ended_at_release();
    }
}

/// A call on a lock the task holds already: runs on that hold (see
/// [`reenter`]); its outcome is its own, the outer run's stays as it was.
async fn run_nested<F: Future>(
    active: &ActiveLock,
    config: &LockConfiguration,
    label: &LockLabel,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    let name = config.name();
    if let Err(err) = reenter(active, config).await {
        tracing::warn!(lock = %name, error = %err, "nested call on a held lock refused; the task did not run");
        Attempt::start(label).failed(&err);
        return Err(err);
    }
    tracing::trace!(lock = %name, "lock already held by this task; running reentrantly");
    let noted = active.noted_outcome();
    let output = task.await;
    active.note(noted);
    Ok(Some(output))
}

/// Lets a nested call on a lock the task holds run on that hold, without a
/// second acquisition: only when the hold covers what the call asks (a second
/// acquisition would wait on the task's own hold), and with the held lease
/// made to cover the call's own `lock_at_most_for` and `lock_at_least_for`.
pub(crate) async fn reenter(
    active: &ActiveLock,
    config: &LockConfiguration,
) -> Result<(), LockError> {
    let lease_lost = || LockError::LeaseLost {
        name: config.name().to_owned(),
    };
    if !covers(active.mode, config.mode()) {
        return Err(LockError::ReentrantUpgrade {
            name: config.name().to_owned(),
            held: active.mode,
            asked: config.mode(),
        });
    }
    if active.is_lost() {
        return Err(lease_lost());
    }
    if active.is_kept_elsewhere() {
        // A scoped run: the scope's lease is renewed in the background.
        return Ok(());
    }
    let mut guard = active.guard.lock().await;
    let Some(guard) = guard.as_mut() else {
        return Err(lease_lost()); // already taken back for release
    };
    let lease_until = guard.lease_until();
    if !guard
        .cover(config.lock_at_most_for(), config.lock_at_least_for())
        .await?
    {
        active.mark_lost();
        return Err(lease_lost());
    }
    if guard.lease_until() != lease_until {
        // The lease watcher times its next check from the longer lease.
        active.changed.notify_one();
    }
    Ok(())
}

/// Whether a lock held in mode `held` covers a nested call asking `asked`:
/// exclusive covers every use; shared permits cover as many permits or fewer.
fn covers(held: LockMode, asked: LockMode) -> bool {
    match (held, asked) {
        (LockMode::Exclusive, _) => true,
        (LockMode::Shared { .. }, LockMode::Exclusive) => false,
        (LockMode::Shared { permits: held }, LockMode::Shared { permits: asked }) => asked <= held,
    }
}

/// Runs `task` beside `watcher`, which returns once the lease is lost (and
/// marked so); `None` when it was, and `cancel` asks the task to be dropped.
/// `cancel` `None`: nothing watches (the watcher is never polled). A panic
/// in `task` is caught (`Some(Err(panic))`), so the lock is given back
/// before it resumes. The task is polled where it lies: a copy would take
/// its size again in this future, for each level of nested locked calls.
async fn run_watched<F: Future>(
    name: &str,
    cancel: Option<bool>,
    mut task: Pin<&mut F>,
    watcher: impl Future<Output = ()>,
) -> Option<Result<F::Output, Box<dyn Any + Send>>> {
    let mut watcher = pin!(watcher);
    let mut watching = cancel.is_some();
    let cancel = cancel.unwrap_or(false);
    poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Some(Ok(output))),
            Err(panic) => return Poll::Ready(Some(Err(panic))),
            Ok(Poll::Pending) => {}
        }
        if watching && watcher.as_mut().poll(cx).is_ready() {
            watching = false;
            if cancel {
                tracing::warn!(lock = %name, "cancelling the job: its lease was lost");
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// Keeps the lease alive (when asked) and returns once it is lost: an
/// extension finds it ended, the store stays unreachable until its end, or
/// the job's own `extend_active_lock` found it lost.
async fn watch_lease(active: &ActiveLock, keep_alive: bool) {
    let mut next_extension = None;
    loop {
        if active.is_lost() {
            return; // marked by the job's extend_active_lock
        }
        let (lease_until, period) = match active.guard.lock().await.as_ref() {
            Some(guard) => (guard.lease_until(), guard.lease_length() / 3),
            None => return,
        };
        let next = *next_extension.get_or_insert_with(|| Instant::now() + period);
        let wake = if keep_alive {
            next.min(lease_until)
        } else {
            lease_until
        };
        // The job extended the lease or lost it: look again from its new state.
        if tokio::time::timeout_at(wake.into(), active.changed.notified())
            .await
            .is_ok()
        {
            next_extension = None;
            continue;
        }
        let mut guard = active.guard.lock().await;
        let Some(guard) = guard.as_mut() else { return };
        let lease_until = guard.lease_until();
        if Instant::now() >= lease_until {
            // Not extended in time (by keep-alive or the job): the store may
            // have given the lock to someone else.
            break;
        }
        if !keep_alive || Instant::now() < next {
            continue;
        }
        // Bounded by the lease end: a store that never answers must not hide the loss.
        match tokio::time::timeout_at(lease_until.into(), guard.renew()).await {
            Ok(Ok(true)) => next_extension = Some(Instant::now() + guard.lease_length() / 3),
            Ok(Ok(false)) | Err(_) => {
                metrics::extension_failed(&active.label);
                break;
            }
            Ok(Err(_)) => {
                metrics::extension_failed(&active.label);
                next_extension = Some(Instant::now() + KEEP_ALIVE_RETRY.min(period));
            }
        }
    }
    active.mark_lost();
}
