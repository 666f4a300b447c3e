//! `LockingTaskExecutor`: runs a future while holding a lock, or skips it,
//! waits for it, keeps it alive, and tells the future when it is lost.
//!
//! The run itself is one pipeline ([`pipeline`]), shared with the attribute
//! and job scopes; taking a held lock ([`waiting`]), nested calls on a held
//! lock ([`reentry`]) and watching a lease while its task runs
//! ([`lease_watch`]) are its parts.

mod lease_watch;
mod pipeline;
mod reentry;
mod waiting;

use std::future::Future;
use std::time::Duration;

use crate::metrics::LockLabel;
use crate::scopes::{Scoped, take_place};
use crate::{LockConfiguration, LockError, LockGuard, LockProvider};

pub(crate) use pipeline::{Hold, run_held};
use waiting::{acquire, lock_retrying, lock_waiting};

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

/// The executor's algorithm, shared with the attribute's expansion.
pub(crate) fn run_locked<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    config: &LockConfiguration,
    options: ExecutionOptions,
    task: F,
) -> impl Future<Output = Result<Option<F::Output>, LockError>> {
    let label = LockLabel::new(config, None);
    run_labelled(provider, config, label, Taking::Lease, options, task)
}

/// How a call takes its hold.
pub(crate) enum Taking {
    /// A lease of the call's configuration.
    Lease,
    /// First a lease of this configuration (an earlier tick, caught up on:
    /// `misfire = "run_once"`), else one of the call's.
    CatchingUp(LockConfiguration),
    /// A place in a scope this replica owns.
    Scope(Scoped),
}

/// [`run_locked`], with `label` on its metrics (the attribute's name
/// template), and with a `scope`, as a job of that scope: on a place in the
/// scope this replica owns instead of a lease of its own. One pipeline; the
/// hold it takes is the only difference.
///
/// A plain function returning the pipeline's future: an `async fn` layer
/// would keep its own copy of `task`, doubling the future's size at every
/// level of nested locked calls.
pub(crate) fn run_labelled<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    config: &LockConfiguration,
    label: LockLabel,
    taking: Taking,
    options: ExecutionOptions,
    task: F,
) -> impl Future<Output = Result<Option<F::Output>, LockError>> {
    let take = async move {
        Ok(match taking {
            Taking::Lease => acquire(provider, config, &options).await?.map(Hold::Lease),
            // The earlier tick if no replica claimed it; else `config`'s.
            Taking::CatchingUp(earlier) => match acquire(provider, &earlier, &options).await? {
                Some(guard) => Some(Hold::Lease(guard)),
                None => acquire(provider, config, &options).await?.map(Hold::Lease),
            },
            // Boxed: a claim's future is larger than an acquisition's, and
            // would otherwise make every unscoped call's future as large.
            Taking::Scope(Scoped { settings, scope }) => {
                Box::pin(take_place(provider, settings, scope, config, options))
                    .await?
                    .map(Hold::Scope)
            }
        })
    };
    run_held(provider.scope(), config, label, options, take, task)
}
