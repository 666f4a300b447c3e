//! The `LockProvider` trait (a store of locks) and `Lease` (one held lease, seen by its guard).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{FinishedRun, LockConfiguration, LockError, LockGuard, MissedTicks};

/// A boxed, `Send` future: what the object-safe traits of shedlock return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store of locks: Redis, a database, or memory.
///
/// Object-safe: `Arc<dyn LockProvider>`, `Box<dyn LockProvider>` and `Arc<P>`
/// are providers too. Implementations return a boxed future:
///
/// ```
/// use shedlock_core::{BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider};
///
/// struct NeverLocks;
///
/// impl LockProvider for NeverLocks {
///     fn try_lock<'a>(
///         &'a self,
///         _config: &'a LockConfiguration,
///     ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
///         Box::pin(async { Ok(None) })
///     }
/// }
/// ```
pub trait LockProvider: Send + Sync + 'static {
    /// Takes the lock described by `config` if nobody holds it.
    ///
    /// `Ok(None)` means the lock is held elsewhere. Never waits for it.
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>>;

    /// Like [`try_lock`](Self::try_lock), for a caller that waits for the lock
    /// and will try again. An exclusive attempt that fails queues `waiter`, so
    /// new shared holders stay out until it has had its turn: a stream of
    /// shared holders cannot starve an exclusive one. The place lasts
    /// [`Waiter::hold_place_for`] unless renewed by the next attempt, so a
    /// waiter that gives up or dies frees it soon.
    ///
    /// Providers without shared locks keep the default: a plain `try_lock`.
    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        let _ = waiter;
        self.try_lock(config)
    }

    /// Starts watching for releases of the lock `name`, so a waiting caller
    /// wakes as soon as the holder lets go instead of polling.
    ///
    /// Called *before* the attempt whose failure makes the caller wait, so no
    /// release in between is missed. Providers without notifications keep the
    /// default, [`ReleaseWatch::none`]: waiters then poll with backoff.
    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        let _ = name;
        Box::pin(async { ReleaseWatch::none() })
    }

    /// Which lock space this provider's names live in (store, key prefix,
    /// environment). A task holding `n` runs a nested call on `n` directly
    /// only when both come from the same scope; the same name in another
    /// store is another lock. Empty by default: one space per process.
    fn scope(&self) -> &str {
        ""
    }

    /// Who this provider's acquisitions say holds them (`locked_by`, without
    /// any per-acquisition suffix). Job scopes tell replicas apart by it:
    /// providers of one [`scope`](Self::scope) and one identity are one
    /// replica, however many provider objects a process makes. Empty by
    /// default: the whole process is one replica.
    fn replica_identity(&self) -> &str {
        ""
    }
}

/// One caller waiting for a lock, across all its attempts: see
/// [`LockProvider::try_lock_waiting`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    id: String,
    hold_place_for: Duration,
}

impl Waiter {
    /// A waiter with a new unique id, whose place in the queue lasts
    /// `hold_place_for` after each attempt.
    pub fn new(hold_place_for: Duration) -> Self {
        Waiter {
            id: crate::identity::unique_acquisition_id(),
            hold_place_for,
        }
    }

    /// Unique to this wait, the same for each of its attempts.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long a failed attempt keeps the waiter's place in the queue.
    pub fn hold_place_for(&self) -> Duration {
        self.hold_place_for
    }

    /// The same waiter holding its place for `hold_place_for` from its next attempt.
    pub(crate) fn set_hold_place_for(&mut self, hold_place_for: Duration) {
        self.hold_place_for = hold_place_for;
    }
}

/// Wakes a waiter when a lock it waits for is released or its lease ends.
/// See [`LockProvider::watch_releases`]; made by a [`ReleaseNotifier`].
#[derive(Debug)]
pub struct ReleaseWatch {
    state: Option<tokio::sync::watch::Receiver<WatchState>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct WatchState {
    releases: u64,
    /// When the current holder's lease ends at the latest, if the store said.
    lease_ends_at: Option<Instant>,
}

impl ReleaseWatch {
    /// A watch that never fires: waiters fall back to polling.
    pub fn none() -> Self {
        ReleaseWatch { state: None }
    }

    /// Resolves at the first release after the watch was made (or after the
    /// previous call returned), or when the holder's lease ends, if the
    /// provider reported its end; never, for a watch without notifications.
    pub async fn released(&mut self) {
        let Some(state) = &mut self.state else {
            return std::future::pending().await;
        };
        // `borrow`, not `borrow_and_update`: a release that came before this call must still count.
        let lease_ends_at = state.borrow().lease_ends_at;
        let changed = match lease_ends_at {
            // A millisecond past the end: the store's expiry has surely run.
            Some(end) => {
                let wake = end.max(Instant::now()) + Duration::from_millis(1);
                match tokio::time::timeout_at(wake.into(), state.changed()).await {
                    Ok(changed) => changed,
                    Err(_elapsed) => Ok(()),
                }
            }
            None => state.changed().await,
        };
        if changed.is_err() {
            // The provider stopped notifying: behave like `none`.
            self.state = None;
            std::future::pending::<()>().await;
        }
    }
}

/// The provider's side of [`ReleaseWatch`]es on one lock name.
#[derive(Clone, Debug)]
pub struct ReleaseNotifier {
    state: tokio::sync::watch::Sender<WatchState>,
}

impl Default for ReleaseNotifier {
    fn default() -> Self {
        ReleaseNotifier {
            state: tokio::sync::watch::channel(WatchState::default()).0,
        }
    }
}

impl ReleaseNotifier {
    /// A notifier nobody watches yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new watch on this lock.
    pub fn watch(&self) -> ReleaseWatch {
        ReleaseWatch {
            state: Some(self.state.subscribe()),
        }
    }

    /// Whether any waiter still watches; a provider may forget the notifier when not.
    pub fn is_watched(&self) -> bool {
        self.state.receiver_count() > 0
    }

    /// The lock was released: wake every waiter.
    pub fn notify_released(&self) {
        self.state.send_modify(|state| {
            state.releases += 1;
            state.lease_ends_at = None;
        });
    }

    /// A failed attempt learned when the holder's lease ends (`None`: not
    /// known). Waiters wake then, as the store will not announce an expiry.
    pub fn note_lease_end(&self, lease_ends_at: Option<Instant>) {
        // Waiters read it before they sleep; changing it wakes nobody.
        self.state.send_if_modified(|state| {
            state.lease_ends_at = lease_ends_at;
            false
        });
    }
}

/// `Arc<P>` and `Box<P>` (so `Arc<dyn LockProvider>` too) are the provider they hold.
macro_rules! forward_lock_provider {
    ($($pointer:ident),*) => {$(
        impl<P: LockProvider + ?Sized> LockProvider for $pointer<P> {
            fn try_lock<'a>(
                &'a self,
                config: &'a LockConfiguration,
            ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
                (**self).try_lock(config)
            }

            fn try_lock_waiting<'a>(
                &'a self,
                config: &'a LockConfiguration,
                waiter: &'a Waiter,
            ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
                (**self).try_lock_waiting(config, waiter)
            }

            fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
                (**self).watch_releases(name)
            }

            fn scope(&self) -> &str {
                (**self).scope()
            }
            fn replica_identity(&self) -> &str {
                (**self).replica_identity()
            }
        }
    )*};
}

forward_lock_provider!(Arc, Box);

/// One lease in a store, as its [`LockGuard`] sees it. Implemented by providers.
///
/// Both operations must check ownership in the store: a lease that has ended
/// (and perhaps been taken by another holder) is never extended or released.
pub trait Lease: Send + Sync + 'static {
    /// Makes the lease end `lock_at_most_for` from now, if it is still this
    /// lease's. `Ok(false)`: the lease had already ended.
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>>;

    /// Ends the lease: at once when `keep_for` is zero, otherwise `keep_for`
    /// from now (never later than it would have ended anyway). `Ok(false)`: the
    /// lease had already ended.
    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>>;

    /// Like [`release`](Self::release), after a run under the lease: the
    /// store also records `run` in the lock's history (its last
    /// [`RUN_HISTORY_LEN`](crate::RUN_HISTORY_LEN) runs), in the same step.
    /// A lease that had already ended records the run as lost
    /// ([`RunOutcome::LeaseLost`](crate::RunOutcome::LeaseLost)). Providers
    /// that keep no history keep the default: a plain release.
    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        let _ = run;
        self.release(keep_for)
    }

    /// Records `run`, whose lease was found ended before its release, in the
    /// lock's history. The default records nothing.
    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        let _ = run;
        Box::pin(async { Ok(()) })
    }

    /// Records ticks of the job's schedule that no replica ran, found by
    /// this lease's claim of a later tick, as one `missed` entry of the
    /// lock's history (see [`MissedTicks::as_run`](crate::MissedTicks::as_run)).
    /// The default records nothing.
    fn record_missed<'a>(
        &'a self,
        missed: &'a MissedTicks,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        let _ = missed;
        Box::pin(async { Ok(()) })
    }

    /// Issues this lease's fencing token, in one step that checks the lease
    /// is still this holder's, so the token is above every token of earlier
    /// holders and below every token of later ones. `Ok(None)`: the lease has
    /// ended. Only called for guards made with
    /// [`GrantedLease::with_token_on_request`](crate::GrantedLease::with_token_on_request), at most once per guard; the
    /// default is for providers that hand the token out with the lease.
    fn issue_fencing_token(&self) -> BoxFuture<'_, Result<Option<u64>, LockError>> {
        Box::pin(async {
            Err(LockError::InvalidConfiguration(
                "this lock provider hands fencing tokens out with the lease; it made a guard \
                 with GrantedLease::with_token_on_request without implementing \
                 Lease::issue_fencing_token (a bug in the provider)"
                    .into(),
            ))
        })
    }
}

/// A shared lease is a lease (a provider may keep its own handle to it).
impl<L: Lease + ?Sized> Lease for Arc<L> {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        (**self).extend(lock_at_most_for)
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        (**self).release(keep_for)
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        (**self).release_after_run(keep_for, run)
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        (**self).record_lost_run(run)
    }

    fn record_missed<'a>(
        &'a self,
        missed: &'a MissedTicks,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        (**self).record_missed(missed)
    }

    fn issue_fencing_token(&self) -> BoxFuture<'_, Result<Option<u64>, LockError>> {
        (**self).issue_fencing_token()
    }
}
