//! Release notifications: a release through any SQL provider of this
//! process wakes the waiters of the same lock (same database and table) in
//! this process at once; releases in other processes reach them through a
//! [`ReleaseFeed`] where the database announces them (PostgreSQL), and
//! otherwise through polling with backoff (the executor's fallback).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use shedlock_core::{BoxFuture, ReleaseNotifiers};

/// Releases made by other processes, heard where the database announces
/// them, waking the waiters of this process.
pub trait ReleaseFeed: Send + Sync {
    /// Makes sure this process hears announcements from now on (called
    /// before a waiter's first attempt); when it cannot, waiters poll.
    fn listen(&self) -> BoxFuture<'_, ()>;
}

/// The notifiers of each lock space (store, server and table) that a
/// provider of this process uses.
static BY_SCOPE: LazyLock<Mutex<HashMap<String, Weak<ReleaseNotifiers>>>> =
    LazyLock::new(Mutex::default);

/// The notifiers of the lock space `scope`, shared by every provider of
/// this process on it.
pub(crate) fn of_scope(scope: &str) -> Arc<ReleaseNotifiers> {
    // Never left inconsistent by a panic, so a poisoned lock is still usable.
    let mut by_scope = BY_SCOPE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(notifiers) = by_scope.get(scope).and_then(Weak::upgrade) {
        return notifiers;
    }
    by_scope.retain(|_, notifiers| notifiers.strong_count() > 0);
    let notifiers = Arc::default();
    by_scope.insert(scope.to_owned(), Arc::downgrade(&notifiers));
    notifiers
}
