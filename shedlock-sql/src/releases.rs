//! Release notifications within this process: a release through any SQL
//! provider of this process wakes the waiters of the same lock (same
//! database and table) in this process at once. Waiters in other processes
//! poll with backoff (the executor's fallback), as databases announce nothing.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shedlock_core::{ReleaseNotifier, ReleaseWatch};

/// The smallest map that is swept of notifiers nobody watches.
const SWEEP_FLOOR: usize = 1024;

#[derive(Default)]
struct Watchers {
    /// Keyed by provider scope and lock name.
    notifiers: HashMap<(String, String), ReleaseNotifier>,
    sweep_at: usize,
}

static WATCHERS: LazyLock<Mutex<Watchers>> = LazyLock::new(Mutex::default);

/// The map is never left inconsistent by a panic, so a poisoned lock is still usable.
fn watchers() -> MutexGuard<'static, Watchers> {
    WATCHERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A watch on releases of `name` in the lock space `scope`.
pub(crate) fn watch(scope: &str, name: &str) -> ReleaseWatch {
    let mut watchers = watchers();
    if watchers.notifiers.len() >= watchers.sweep_at.max(SWEEP_FLOOR) {
        watchers
            .notifiers
            .retain(|_, notifier| notifier.is_watched());
        watchers.sweep_at = 2 * watchers.notifiers.len();
    }
    watchers
        .notifiers
        .entry((scope.to_owned(), name.to_owned()))
        .or_default()
        .watch()
}

/// This process released `name`: free at once (`keep_for` zero), or kept
/// `keep_for` longer (`lock_at_least_for`), when waiters wake to try again.
pub(crate) fn notify(scope: &str, name: &str, keep_for: Duration) {
    let watchers = watchers();
    // Building the key costs two allocations; skip it when nobody waits at all.
    if watchers.notifiers.is_empty() {
        return;
    }
    if let Some(notifier) = watchers.notifiers.get(&(scope.to_owned(), name.to_owned())) {
        if keep_for.is_zero() {
            notifier.notify_released();
        } else {
            notifier.note_lease_end(Some(Instant::now() + keep_for));
        }
    }
}

/// Whether anybody in this process waits for `name` in `scope`.
pub(crate) fn is_watched(scope: &str, name: &str) -> bool {
    let watchers = watchers();
    !watchers.notifiers.is_empty()
        && watchers
            .notifiers
            .get(&(scope.to_owned(), name.to_owned()))
            .is_some_and(ReleaseNotifier::is_watched)
}

/// The holder of `name` in `scope` keeps it until `lease_ends_at` (`None`: not known).
pub(crate) fn note_lease_end(scope: &str, name: &str, lease_ends_at: Option<Instant>) {
    if let Some(notifier) = watchers()
        .notifiers
        .get(&(scope.to_owned(), name.to_owned()))
    {
        notifier.note_lease_end(lease_ends_at);
    }
}
