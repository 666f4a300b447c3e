//! `LockingTaskExecutor`: runs a future while holding a lock, or skips it.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use crate::context::{ActiveLock, HeldLocks};
use crate::{LockConfiguration, LockError, LockProvider};

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
    /// - `Err(_)`: the store failed; `task` did not run.
    ///
    /// Reentrant: when the current task already holds a lock of the same name,
    /// `task` runs directly. A panic in `task` releases the lock, then resumes.
    /// A failed release after the task ran is logged, not returned: the task's
    /// output is kept, and the lease ends at `lock_at_most_for` at the latest.
    pub async fn execute<F: Future>(
        &self,
        config: impl AsRef<LockConfiguration>,
        task: F,
    ) -> Result<Option<F::Output>, LockError> {
        run_locked(&self.provider, config.as_ref(), task).await
    }
}

/// The executor's algorithm, shared with the attribute's expansion.
pub(crate) async fn run_locked<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    config: &LockConfiguration,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    let held = HeldLocks::current();
    let name = config.name();
    if held.contains(name) {
        tracing::trace!(lock = %name, "lock already held by this task; running reentrantly");
        return Ok(Some(task.await));
    }
    tracing::debug!(lock = %name, "attempting lock");
    let guard = match provider.try_lock(config).await {
        Ok(Some(guard)) => guard,
        Ok(None) => {
            tracing::debug!(lock = %name, "lock held elsewhere; skipping");
            return Ok(None);
        }
        Err(err) => {
            tracing::warn!(lock = %name, error = %err, "lock attempt failed; the task did not run");
            return Err(err);
        }
    };
    tracing::debug!(lock = %name, fencing_token = guard.fencing_token(), "lock acquired");
    let active = Arc::new(ActiveLock {
        info: guard.info().clone(),
        guard: tokio::sync::Mutex::new(Some(guard)),
    });
    let outcome = held.with(active.clone()).scope(catch_unwind_of(task)).await;
    let guard = active.guard.lock().await.take();
    if let Some(guard) = guard {
        // Errors are logged by the guard; the task's output is what the caller needs.
        let _ = guard.unlock().await;
    }
    match outcome {
        Ok(output) => Ok(Some(output)),
        Err(panic) => resume_unwind(panic),
    }
}

/// Turns a panic while polling `task` into an `Err`, so the lock can be
/// released before the panic resumes.
async fn catch_unwind_of<F: Future>(task: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut task = pin!(task);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}
