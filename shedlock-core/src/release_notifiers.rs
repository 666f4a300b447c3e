//! `ReleaseNotifiers`: a provider's release notifiers by lock, swept of those nobody watches.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::provider::{ReleaseNotifier, ReleaseWatch};

/// The smallest map that is swept; after a sweep the threshold doubles from
/// what is left, so sweeping costs O(1) per watch on average.
const SWEEP_FLOOR: usize = 1024;

/// The [`ReleaseNotifier`]s of the locks somebody waits for, by lock (its
/// name, or its key in the store): what a provider keeps to implement
/// [`LockProvider::watch_releases`](crate::LockProvider::watch_releases).
///
/// A lock whose lease ends without a release, or whose waiters give up,
/// leaves a notifier nobody watches: those are swept out as the map grows,
/// so per-resource names do not pile up.
#[derive(Debug, Default)]
pub struct ReleaseNotifiers {
    state: Mutex<Notifiers>,
}

#[derive(Debug, Default)]
struct Notifiers {
    by_lock: HashMap<Box<str>, ReleaseNotifier>,
    /// The size past which the map is swept (at least [`SWEEP_FLOOR`]).
    sweep_at: usize,
}

impl ReleaseNotifiers {
    /// No notifiers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new watch on releases of `lock`.
    pub fn watch(&self, lock: &str) -> ReleaseWatch {
        let mut notifiers = self.notifiers();
        if notifiers.by_lock.len() >= notifiers.sweep_at.max(SWEEP_FLOOR) {
            notifiers
                .by_lock
                .retain(|_, notifier| notifier.is_watched());
            notifiers.sweep_at = 2 * notifiers.by_lock.len();
        }
        if let Some(notifier) = notifiers.by_lock.get(lock) {
            return notifier.watch();
        }
        let notifier = ReleaseNotifier::new();
        let watch = notifier.watch();
        notifiers.by_lock.insert(lock.into(), notifier);
        watch
    }

    /// `lock` was released: wakes its waiters, or forgets its notifier once
    /// nobody watches it.
    pub fn notify_released(&self, lock: &str) {
        let mut notifiers = self.notifiers();
        if let Some(notifier) = notifiers.by_lock.get(lock) {
            if notifier.is_watched() {
                notifier.notify_released();
            } else {
                notifiers.by_lock.remove(lock);
            }
        }
    }

    /// A failed attempt learned when the holder's lease of `lock` ends
    /// (`None`: not known); its waiters wake then, as stores do not announce
    /// expiries. See [`ReleaseNotifier::note_lease_end`].
    pub fn note_lease_end(&self, lock: &str, lease_ends_at: Option<Instant>) {
        if let Some(notifier) = self.notifiers().by_lock.get(lock) {
            notifier.note_lease_end(lease_ends_at);
        }
    }

    /// Whether anybody waits for `lock`.
    pub fn is_watched(&self, lock: &str) -> bool {
        self.notifiers()
            .by_lock
            .get(lock)
            .is_some_and(ReleaseNotifier::is_watched)
    }

    /// Whether anybody waits for any lock.
    pub fn any_watched(&self) -> bool {
        self.notifiers()
            .by_lock
            .values()
            .any(ReleaseNotifier::is_watched)
    }

    /// Wakes every waiter, for when releases may have gone unannounced (a
    /// lost subscription): each tries again at once rather than at its next poll.
    pub fn notify_all(&self) {
        for notifier in self.notifiers().by_lock.values() {
            notifier.notify_released();
        }
    }

    /// The map is never left inconsistent by a panic, so a poisoned lock is still usable.
    fn notifiers(&self) -> MutexGuard<'_, Notifiers> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_release_wakes_the_waiters_of_that_lock_only() {
        let notifiers = ReleaseNotifiers::new();
        let mut report = notifiers.watch("report");
        let mut backup = notifiers.watch("backup");
        notifiers.notify_released("report");
        let woke = tokio::time::timeout(Duration::from_secs(1), report.released()).await;
        assert!(woke.is_ok(), "the waiter of the released lock must wake");
        let slept = tokio::time::timeout(Duration::from_millis(50), backup.released()).await;
        assert!(slept.is_err(), "a waiter of another lock must not wake");
    }

    #[tokio::test]
    async fn a_noted_lease_end_wakes_the_waiters_then() {
        let notifiers = ReleaseNotifiers::new();
        let mut watch = notifiers.watch("report");
        let ends_at = Instant::now() + Duration::from_millis(30);
        notifiers.note_lease_end("report", Some(ends_at));
        let woke = tokio::time::timeout(Duration::from_secs(1), watch.released()).await;
        assert!(woke.is_ok(), "the waiter did not wake at the lease's end");
        assert!(Instant::now() >= ends_at);
    }

    #[test]
    fn notifiers_nobody_watches_are_forgotten() {
        let notifiers = ReleaseNotifiers::new();
        let watch = notifiers.watch("report");
        assert!(notifiers.is_watched("report") && notifiers.any_watched());
        drop(watch);
        assert!(!notifiers.any_watched());
        notifiers.notify_released("report");
        assert!(notifiers.notifiers().by_lock.is_empty());
    }

    #[test]
    fn the_map_is_swept_as_it_grows() {
        let notifiers = ReleaseNotifiers::new();
        let kept = notifiers.watch("kept");
        for name in 0..3 * SWEEP_FLOOR {
            drop(notifiers.watch(&name.to_string()));
        }
        let left = notifiers.notifiers().by_lock.len();
        assert!(left <= SWEEP_FLOOR + 1, "{left} notifiers left");
        assert!(notifiers.is_watched("kept"));
        drop(kept);
    }
}
