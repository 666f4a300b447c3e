//! The task-local "current lock": `assert_locked`, `current_lock`, `extend_active_lock`.
//!
//! Task-local rather than thread-local, so it survives `.await` points where a
//! multi-threaded runtime moves the task between threads.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use crate::lease_keeping::LostSignal;
use crate::metrics::{self, LockLabel};
use crate::{LockError, LockGuard, LockInfo, LockMode, RunOutcome};

/// A lock held by the current task's executor, shared with the job's body.
pub(crate) struct ActiveLock {
    pub(crate) info: LockInfo,
    /// How the task holds the lock: what nested calls on it may re-enter.
    pub(crate) mode: LockMode,
    /// A hash of the provider's [`scope`](crate::LockProvider::scope): the
    /// same name in another store is another lock. (Two scopes in one task's
    /// chain share a hash with probability 2^-64; the string would cost an
    /// allocation per run.)
    scope: u64,
    /// A scoped run: the lease is the scope's, kept by its owner in the
    /// background (this is its lost signal), and `guard` is `None` throughout.
    kept_by: Option<Arc<LostSignal>>,
    /// `None` once the executor has taken the guard back to release it.
    pub(crate) guard: tokio::sync::Mutex<Option<LockGuard>>,
    /// Set when the lease is known to have ended under the job.
    lost: AtomicBool,
    /// The run's outcome as the job's wrapper noted it ([`note_outcome`]:
    /// `Error` for an `Err` output, `Cancelled` for a stopped cron job), as a
    /// [`RunOutcome::code`]; 0 when none was noted.
    noted: AtomicU8,
    /// Wakes [`lease_lost`] callers when `lost` is set.
    lost_notify: tokio::sync::Notify,
    /// Wakes the lease watcher when the job extended the lease or lost it.
    pub(crate) changed: tokio::sync::Notify,
    /// The lock the task held when it took this one (a nested locked call).
    outer: Option<Arc<ActiveLock>>,
    /// The `lock` label of this run's metrics.
    pub(crate) label: LockLabel,
}

impl ActiveLock {
    /// Whether the lease is known to have ended under the job: marked, or
    /// (a scoped run) signalled by the scope's keeper, which the run's
    /// watcher marks only at its next poll.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire) || self.kept_by.as_ref().is_some_and(|kept| kept.is_set())
    }

    /// Whether the lease is a scope's, kept by its owner (no guard here).
    pub(crate) fn is_kept_elsewhere(&self) -> bool {
        self.kept_by.is_some()
    }

    /// Records that the lease ended under the job, and tells whoever waits.
    pub(crate) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            tracing::warn!(lock = %self.info.name(), "lock lease lost while the job runs");
            metrics::lease_lost(&self.label);
        }
        self.lost_notify.notify_waiters();
        self.changed.notify_one();
    }

    /// Records that the run's release found the lease ended: a lost lease
    /// in the metrics, unless the run already knew (counted once per run).
    pub(crate) fn found_ended_at_release(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            metrics::lease_lost(&self.label);
        }
    }

    /// The outcome noted for the run, if any (see [`note_outcome`]).
    pub(crate) fn noted_outcome(&self) -> Option<RunOutcome> {
        RunOutcome::from_code(self.noted.load(Ordering::Acquire))
    }

    /// Notes `outcome` for the run, or clears the note (`None`).
    pub(crate) fn note(&self, outcome: Option<RunOutcome>) {
        self.noted
            .store(outcome.map_or(0, RunOutcome::code), Ordering::Release);
    }

    /// Resolves once the lease is known to have ended.
    async fn lost(&self) {
        let mut notified = pin!(self.lost_notify.notified());
        // Registered before the check, so a loss marked in between still wakes it.
        notified.as_mut().enable();
        if !self.is_lost() {
            notified.await;
        }
    }
}

/// The locks the current task holds: the innermost, which links to the one
/// taken before it. A linked chain, so taking a lock allocates nothing more
/// than its `ActiveLock`.
#[derive(Clone, Default)]
pub(crate) struct HeldLocks(Option<Arc<ActiveLock>>);

tokio::task_local! {
    static HELD: HeldLocks;
}

impl HeldLocks {
    /// The locks of the current task (none outside any locked task).
    pub(crate) fn current() -> HeldLocks {
        HELD.try_with(Clone::clone).unwrap_or_default()
    }

    /// The lock `name` of the provider scope `scope`, if the task holds it
    /// (at any depth of nesting).
    pub(crate) fn find(&self, scope: &str, name: &str) -> Option<&ActiveLock> {
        // The common case, no lock held, computes no hash.
        let mut lock = self.0.as_deref()?;
        let scope = scope_hash(scope);
        loop {
            if lock.info.name() == name && lock.scope == scope {
                return Some(lock);
            }
            lock = lock.outer.as_deref()?;
        }
    }

    pub(crate) fn innermost(&self) -> Option<&Arc<ActiveLock>> {
        self.0.as_ref()
    }

    /// These locks and `guard`'s, held in `mode`, which becomes the innermost
    /// (returned too); `label` labels its metrics.
    pub(crate) fn with(
        self,
        guard: LockGuard,
        mode: LockMode,
        scope: &str,
        label: LockLabel,
    ) -> (HeldLocks, Arc<ActiveLock>) {
        self.with_lease(guard.info().clone(), Lease::Own(guard), mode, scope, label)
    }

    /// These locks and the lock `info` describes, whose lease someone else
    /// keeps (a job scope's owner), held in `mode`.
    pub(crate) fn with_kept(
        self,
        info: LockInfo,
        kept_by: Arc<LostSignal>,
        mode: LockMode,
        scope: &str,
        label: LockLabel,
    ) -> (HeldLocks, Arc<ActiveLock>) {
        self.with_lease(info, Lease::Kept(kept_by), mode, scope, label)
    }

    fn with_lease(
        self,
        info: LockInfo,
        lease: Lease,
        mode: LockMode,
        scope: &str,
        label: LockLabel,
    ) -> (HeldLocks, Arc<ActiveLock>) {
        let (guard, kept_by) = match lease {
            Lease::Own(guard) => (Some(guard), None),
            Lease::Kept(kept_by) => (None, Some(kept_by)),
        };
        let active = Arc::new(ActiveLock {
            info,
            mode,
            scope: scope_hash(scope),
            kept_by,
            guard: tokio::sync::Mutex::new(guard),
            lost: AtomicBool::new(false),
            noted: AtomicU8::new(0),
            lost_notify: tokio::sync::Notify::new(),
            changed: tokio::sync::Notify::new(),
            outer: self.0,
            label,
        });
        (HeldLocks(Some(active.clone())), active)
    }

    /// Runs `future` with `self` as the task's held locks.
    pub(crate) fn scope<F: std::future::Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<HeldLocks, F> {
        HELD.scope(self, future)
    }
}

/// The lease a locked task runs on.
enum Lease {
    /// Its own: the guard.
    Own(LockGuard),
    /// A scope's, kept by its owner: the owner's lost signal.
    Kept(Arc<LostSignal>),
}

/// The hash [`ActiveLock`] keeps of a scope; the same for a scope throughout the process.
fn scope_hash(scope: &str) -> u64 {
    static STATE: std::sync::LazyLock<hashbrown::DefaultHashBuilder> =
        std::sync::LazyLock::new(hashbrown::DefaultHashBuilder::default);
    std::hash::BuildHasher::hash_one(&*STATE, scope)
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
    if active.is_kept_elsewhere() {
        // A scoped run: the scope's owner keeps the lease while it lasts.
        return if active.is_lost() {
            Err(LockError::LeaseLost {
                name: active.info.name().to_owned(),
            })
        } else {
            Ok(())
        };
    }
    let mut guard = active.guard.lock().await;
    let guard = guard.as_mut().ok_or(LockError::NotLocked)?;
    let extended = guard.extend(lock_at_most_for, lock_at_least_for).await;
    if !matches!(extended, Ok(true)) {
        metrics::extension_failed(&active.label);
    }
    if extended? {
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

/// Notes, for the run's history, how the innermost lock's job ended (an
/// `Err` output is an error, a stopped cron job cancelled). Called by the
/// attribute's expansion and by cron jobs, through
/// [`runs::note_outcome`](crate::runs::note_outcome).
pub(crate) fn note_outcome(outcome: RunOutcome) {
    if let Some(active) = HeldLocks::current().innermost() {
        active.note(Some(outcome));
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
    active.lost().await;
}

/// Whether the lease of the innermost lock the current task holds is known
/// to be lost (see [`lease_lost`]). `false` outside a locked task.
pub fn is_lease_lost() -> bool {
    HeldLocks::current()
        .innermost()
        .is_some_and(|active| active.is_lost())
}
