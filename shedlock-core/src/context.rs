//! The task-local "current lock": `assert_locked`, `current_lock`, `extend_active_lock`.
//!
//! Task-local rather than thread-local, so it survives `.await` points where a
//! multi-threaded runtime moves the task between threads.

use std::sync::Arc;
use std::time::Duration;

use crate::{LockError, LockGuard, LockInfo};

/// A lock held by the current task's executor, shared with the job's body.
pub(crate) struct ActiveLock {
    pub(crate) info: LockInfo,
    /// The provider's [`scope`](crate::LockProvider::scope): the same name in
    /// another store is another lock.
    pub(crate) scope: String,
    /// `None` once the executor has taken the guard back to release it.
    pub(crate) guard: tokio::sync::Mutex<Option<LockGuard>>,
    /// Set to `true` when the lease is known to have ended under the job.
    pub(crate) lost: tokio::sync::watch::Sender<bool>,
    /// Wakes the lease watcher when the job extended the lease or lost it.
    pub(crate) changed: tokio::sync::Notify,
}

impl ActiveLock {
    pub(crate) fn new(guard: LockGuard, scope: &str) -> Self {
        ActiveLock {
            info: guard.info().clone(),
            scope: scope.to_owned(),
            guard: tokio::sync::Mutex::new(Some(guard)),
            lost: tokio::sync::watch::channel(false).0,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Records that the lease ended under the job, and tells whoever waits.
    pub(crate) fn mark_lost(&self) {
        if !self.lost.send_replace(true) {
            tracing::warn!(lock = %self.info.name(), "lock lease lost while the job runs");
        }
        self.changed.notify_one();
    }
}

/// The locks the current task holds, outermost first.
#[derive(Clone, Default)]
pub(crate) struct HeldLocks(Vec<Arc<ActiveLock>>);

tokio::task_local! {
    static HELD: HeldLocks;
}

impl HeldLocks {
    /// The locks of the current task (empty outside any locked task).
    pub(crate) fn current() -> HeldLocks {
        HELD.try_with(Clone::clone).unwrap_or_default()
    }

    pub(crate) fn contains(&self, scope: &str, name: &str) -> bool {
        self.0
            .iter()
            .any(|held| held.info.name() == name && held.scope == scope)
    }

    pub(crate) fn innermost(&self) -> Option<&Arc<ActiveLock>> {
        self.0.last()
    }

    pub(crate) fn with(mut self, lock: Arc<ActiveLock>) -> HeldLocks {
        self.0.push(lock);
        self
    }

    /// Runs `future` with `self` as the task's held locks.
    pub(crate) async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        HELD.scope(self, future).await
    }
}

/// Panics unless the current task runs under a lock taken by shedlock.
///
/// Like ShedLock's `LockAssert.assertLocked()`: put it at the top of a job
/// that must never run unlocked, to catch a missing attribute in tests.
///
/// # Panics
///
/// When the current task holds no lock (including inside a task spawned from
/// a locked one: the lock belongs to the task that took it).
#[track_caller]
pub fn assert_locked() {
    if HeldLocks::current().innermost().is_none() {
        panic!("{NOT_LOCKED}"); // allow-panic: asserting is this function's whole purpose
    }
}

const NOT_LOCKED: &str = "shedlock::assert_locked: this task holds no lock; run it through \
                          #[scheduler_lock] or LockingTaskExecutor::execute";

/// The innermost lock the current task holds, if any.
pub fn current_lock() -> Option<LockInfo> {
    HeldLocks::current()
        .innermost()
        .map(|active| active.info.clone())
}

/// Extends the innermost lock the current task holds: its lease now ends
/// `lock_at_most_for` from now, and it is kept at least `lock_at_least_for` from now.
///
/// # Errors
///
/// [`LockError::NotLocked`] outside a locked task, [`LockError::LeaseLost`] when
/// the lease had already ended, and store errors.
pub async fn extend_active_lock(
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
) -> Result<(), LockError> {
    let held = HeldLocks::current();
    let active = held.innermost().ok_or(LockError::NotLocked)?;
    let mut guard = active.guard.lock().await;
    let guard = guard.as_mut().ok_or(LockError::NotLocked)?;
    if guard.extend(lock_at_most_for, lock_at_least_for).await? {
        // The lease watcher times its next check from the new lease.
        active.changed.notify_one();
        Ok(())
    } else {
        active.mark_lost();
        Err(LockError::LeaseLost {
            name: guard.name().to_owned(),
        })
    }
}

/// Resolves when the lease of the innermost lock the current task holds is
/// lost: an extension found it taken or deleted, or the store stayed
/// unreachable until the lease's end. Never resolves outside a locked task.
///
/// Loss is watched for while the lock is kept alive (`keep_alive`) or when the
/// job is to be cancelled on loss (`cancel_on_lease_loss`); an
/// [`extend_active_lock`] that finds the lease ended also signals it.
///
/// ```no_run
/// # async fn copy_next_batch() -> bool { false }
/// # async fn job() {
/// loop {
///     tokio::select! {
///         () = shedlock_core::lease_lost() => break, // stop writing: someone else may run now
///         more = copy_next_batch() => if !more { break },
///     }
/// }
/// # }
/// ```
pub async fn lease_lost() {
    let held = HeldLocks::current();
    let Some(active) = held.innermost() else {
        return std::future::pending().await;
    };
    let mut lost = active.lost.subscribe();
    if lost.wait_for(|lost| *lost).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Whether the lease of the innermost lock the current task holds is known
/// to be lost (see [`lease_lost`]). `false` outside a locked task.
pub fn is_lease_lost() -> bool {
    HeldLocks::current()
        .innermost()
        .is_some_and(|active| *active.lost.borrow())
}
