//! The `LockProvider` trait (a store of locks) and `Lease` (one held lease, seen by its guard).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{LockConfiguration, LockError, LockGuard};

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
}

/// Wakes a waiter when a lock it waits for is released. See
/// [`LockProvider::watch_releases`].
#[derive(Debug)]
pub struct ReleaseWatch {
    releases: Option<tokio::sync::watch::Receiver<u64>>,
}

impl ReleaseWatch {
    /// A watch that never fires: waiters fall back to polling.
    pub fn none() -> Self {
        ReleaseWatch { releases: None }
    }

    /// A watch on a counter of releases, which the provider increments
    /// (`send_modify(|n| *n += 1)`) on every release of the lock.
    pub fn new(releases: tokio::sync::watch::Receiver<u64>) -> Self {
        ReleaseWatch {
            releases: Some(releases),
        }
    }

    /// Resolves at the first release after the watch was made (or after the
    /// previous call returned); never, for a watch without notifications.
    pub async fn released(&mut self) {
        match &mut self.releases {
            Some(releases) => {
                if releases.changed().await.is_err() {
                    // The provider stopped notifying: behave like `none`.
                    self.releases = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl<P: LockProvider + ?Sized> LockProvider for Arc<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        (**self).try_lock(config)
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        (**self).watch_releases(name)
    }
}

impl<P: LockProvider + ?Sized> LockProvider for Box<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        (**self).try_lock(config)
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        (**self).watch_releases(name)
    }
}

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
}
