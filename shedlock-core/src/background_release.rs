//! `BackgroundRelease`: giving back a lease nobody waits on any more (a dropped guard, an abandoned acquisition), retried until it would have ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::provider::Lease;

/// The pause after the first failed attempt; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// A lease to give back in the background, on every provider the same way:
/// released with backoff (50 ms doubling to 5 s) until the store has removed
/// it, or until it would have ended anyway. A store that is down for a
/// moment therefore does not leave the lock held until `lock_at_most_for`.
#[must_use = "a background release does nothing until it is spawned or run"]
pub struct BackgroundRelease {
    /// The lock's name (or its key in the store), for logs.
    lock: Arc<str>,
    lease: Arc<dyn Lease>,
    /// When the lease ends at the latest: past it there is nothing to give back.
    until: Instant,
    /// Until when the lock stays held (`lock_at_least_for`); `None`: freed at once.
    keep_until: Option<Instant>,
    /// The lease certainly was taken, so "not found" means it has ended;
    /// otherwise the acquisition may not have landed yet, and it is looked for again.
    taken: bool,
}

impl BackgroundRelease {
    /// A lease this process holds (a dropped guard, an acquisition whose
    /// answer came after its caller left): "not found" means it has ended.
    pub fn held(lock: impl Into<Arc<str>>, lease: Arc<dyn Lease>, until: Instant) -> Self {
        BackgroundRelease {
            lock: lock.into(),
            lease,
            until,
            keep_until: None,
            taken: true,
        }
    }

    /// A lease an acquisition may have taken (its answer was lost, or it
    /// does not stand): "not found" may only mean the acquisition has not
    /// landed yet, so it is looked for again until `until`.
    pub fn possibly_taken(
        lock: impl Into<Arc<str>>,
        lease: Arc<dyn Lease>,
        until: Instant,
    ) -> Self {
        BackgroundRelease {
            taken: false,
            ..Self::held(lock, lease, until)
        }
    }

    /// Keeps the lock until `keep_until` (its `lock_at_least_for`) instead
    /// of freeing it at once.
    pub fn keeping_until(self, keep_until: Option<Instant>) -> Self {
        BackgroundRelease { keep_until, ..self }
    }

    /// Gives the lease back on the current Tokio runtime: a lease known to
    /// be taken on a task of an enclosing
    /// [`track_releases`](crate::track_releases), if any. Without a runtime
    /// (or while it shuts down), the lease ends at `lock_at_most_for`; that
    /// is logged.
    pub fn spawn(self) {
        let lock = self.lock.clone();
        let spawned = if self.taken {
            crate::release_tracking::spawn_release(async move {
                self.run().await;
            })
        } else {
            // Not found, it is looked for until it would have ended: too long to wait for.
            tokio::runtime::Handle::try_current()
                .map(|runtime| drop(runtime.spawn(self.run())))
                .is_ok()
        };
        if !spawned {
            tracing::warn!(
                lock = %lock,
                "a lock was let go outside a Tokio runtime and cannot be released in the \
                 background; it ends at lock_at_most_for"
            );
        }
    }

    /// Gives the lease back, retrying until the store has removed it
    /// (`true`), has not found a lease known to be taken, or the lease would
    /// have ended anyway.
    pub async fn run(self) -> bool {
        let mut pause = FIRST_PAUSE;
        loop {
            let keep_for = self.keep_until.map_or(Duration::ZERO, |keep_until| {
                keep_until.saturating_duration_since(Instant::now())
            });
            let failed = match self.lease.release(keep_for).await {
                Ok(true) => {
                    if self.taken {
                        tracing::debug!(lock = %self.lock, ?keep_for, "lock released in the background");
                    } else {
                        tracing::info!(lock = %self.lock, "the lease of an unsettled acquisition was released in the background");
                    }
                    return true;
                }
                Ok(false) if self.taken => {
                    tracing::debug!(lock = %self.lock, "lock lease had already ended before its background release");
                    return false;
                }
                Ok(false) => false,
                Err(err) => {
                    tracing::debug!(lock = %self.lock, error = %err, "background release failed; retrying");
                    true
                }
            };
            let left = self.until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if failed {
                    tracing::warn!(
                        lock = %self.lock,
                        "lock could not be released in the background; it ends at lock_at_most_for"
                    );
                } else {
                    tracing::debug!(
                        lock = %self.lock,
                        "stopped looking for the lease of an unsettled acquisition: any lease it took has ended"
                    );
                }
                return false;
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::{BoxFuture, LockError, StoreFailure};

    /// A lease whose releases answer as scripted (then `Ok(true)`), recording what they asked.
    #[derive(Default)]
    struct ScriptedLease {
        answers: Mutex<VecDeque<Result<bool, ()>>>,
        asked: Mutex<Vec<Duration>>,
    }

    impl ScriptedLease {
        fn answering(answers: impl IntoIterator<Item = Result<bool, ()>>) -> Arc<Self> {
            Arc::new(ScriptedLease {
                answers: Mutex::new(answers.into_iter().collect()),
                asked: Mutex::default(),
            })
        }

        fn attempts(&self) -> usize {
            self.asked.lock().unwrap().len() // allow-panic: unit test
        }
    }

    impl Lease for ScriptedLease {
        fn extend(&self, _: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
            Box::pin(async { Ok(true) })
        }

        fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
            self.asked.lock().unwrap().push(keep_for); // allow-panic: unit test
            let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(true)); // allow-panic: unit test
            Box::pin(async move {
                answer.map_err(|()| {
                    LockError::from(StoreFailure {
                        store: "test",
                        action: "releasing lock 'job'".into(),
                        what_happened: "the store is down".into(),
                        consequence: "the lease ends at lock_at_most_for".into(),
                    })
                })
            })
        }
    }

    fn in_a_second() -> Instant {
        Instant::now() + Duration::from_secs(1)
    }

    /// How a release `start`ed on a lease answering `answers` ends: whether
    /// it released, and how many attempts it made.
    async fn ended(
        answers: impl IntoIterator<Item = Result<bool, ()>>,
        start: impl FnOnce(Arc<dyn Lease>) -> BackgroundRelease,
    ) -> (bool, usize) {
        let lease = ScriptedLease::answering(answers);
        let released = start(lease.clone()).run().await;
        (released, lease.attempts())
    }

    fn held(lease: Arc<dyn Lease>) -> BackgroundRelease {
        BackgroundRelease::held("job", lease, in_a_second())
    }

    #[tokio::test]
    async fn a_held_lease_is_retried_through_store_failures_until_released() {
        assert_eq!(ended([Err(()), Err(())], held).await, (true, 3));
    }

    #[tokio::test]
    async fn a_held_lease_found_ended_is_left_alone() {
        assert_eq!(ended([Ok(false)], held).await, (false, 1));
    }

    #[tokio::test]
    async fn a_possibly_taken_lease_is_looked_for_until_it_lands() {
        let possibly_taken = |lease| BackgroundRelease::possibly_taken("job", lease, in_a_second());
        assert_eq!(
            ended([Ok(false), Ok(false)], possibly_taken).await,
            (true, 3)
        );
    }

    #[tokio::test]
    async fn retries_stop_when_the_lease_would_have_ended() {
        let until = Instant::now() + Duration::from_millis(120);
        let failing = std::iter::repeat_n(Err(()), 100);
        let ended = ended(failing, |lease| {
            BackgroundRelease::held("job", lease, until)
        })
        .await;
        assert!(Instant::now() >= until);
        // At 0, 50, 120 (cut from 150) ms: backoff, and one last try at the end.
        assert_eq!(ended, (false, 3), "(released, attempts)");
    }

    #[tokio::test]
    async fn a_retry_keeps_the_lock_only_until_lock_at_least_for_ends() {
        let lease = ScriptedLease::answering([Err(())]);
        let keep_until = Instant::now() + Duration::from_millis(500);
        BackgroundRelease::held("job", lease.clone(), in_a_second())
            .keeping_until(Some(keep_until))
            .run()
            .await;
        let asked = lease.asked.lock().unwrap().clone(); // allow-panic: unit test
        assert_eq!(asked.len(), 2);
        assert!(
            asked[1] < asked[0] && asked[0] <= Duration::from_millis(500),
            "{asked:?}"
        );
    }

    #[test]
    fn without_a_runtime_the_lease_is_left_to_end() {
        let lease = ScriptedLease::answering([]);
        BackgroundRelease::held("job", lease.clone(), in_a_second()).spawn();
        assert_eq!(lease.attempts(), 0);
    }
}
