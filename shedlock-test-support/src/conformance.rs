//! The provider conformance suite: the behaviour every `LockProvider` must show.
//!
//! A provider crate runs it from its tests with
//! [`provider_conformance_tests!`](crate::provider_conformance_tests), giving a
//! function that makes a new provider (a new connection) on each call:
//!
//! ```ignore
//! async fn provider() -> MyProvider { MyProvider::connect(..).await.expect("test store") } // allow-panic: example
//! shedlock_test_support::provider_conformance_tests!(provider);
//! ```
//!
//! Each case uses lock names of its own, so cases can run in parallel against
//! one store. Cases that need several holders make several providers, so a
//! provider's state is shared through the store alone.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shedlock_core::identity::unique_acquisition_id;
use shedlock_core::{
    LockConfiguration, LockError, LockGuard, LockProvider, LockingTaskExecutor, ReleaseWatch,
    Waiter,
};
use tokio::task::JoinHandle;

mod leases;
mod ticks;
mod waiters;

pub use leases::*;
pub use ticks::*;
pub use waiters::*;

/// What makes the providers of a case: a new provider (a new connection to
/// the test store) on each call. Any `Fn() -> impl Future<Output = P>` is
/// one, so a case is given the function that makes the provider.
pub trait Make<P> {
    /// A new provider.
    fn one(&self) -> impl Future<Output = P>;

    /// Two new providers.
    fn two(&self) -> impl Future<Output = (P, P)> {
        async { (self.one().await, self.one().await) }
    }

    /// Three new providers.
    fn three(&self) -> impl Future<Output = (P, P, P)> {
        async { (self.one().await, self.one().await, self.one().await) }
    }

    /// An executor on a new provider.
    fn executor(&self) -> impl Future<Output = LockingTaskExecutor<P>>
    where
        P: LockProvider,
    {
        async { LockingTaskExecutor::new(self.one().await) }
    }

    /// An executor on a new provider, and another provider beside it.
    fn executor_and_other(&self) -> impl Future<Output = (LockingTaskExecutor<P>, P)>
    where
        P: LockProvider,
    {
        async { (self.executor().await, self.one().await) }
    }
}

impl<P, F, Fut> Make<P> for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = P>,
{
    fn one(&self) -> impl Future<Output = P> {
        self()
    }
}

pub(crate) const LONG: Duration = Duration::from_secs(30);
/// A lease short enough to wait out in a test.
pub(crate) const SHORT: Duration = Duration::from_millis(300);
/// Longer than [`SHORT`] by a margin for a loaded machine.
pub(crate) const PAST_SHORT: Duration = Duration::from_millis(600);

/// The guard's fencing token; a test failure when it cannot be had.
pub async fn token_of(guard: &LockGuard) -> u64 {
    guard
        .fencing_token()
        .await
        .unwrap_or_else(|err| fail!("no fencing token while the lease is held: {err}"))
}

/// A lock name no other case or run uses.
pub fn unique_name(case: &str) -> String {
    format!("conformance-{case}-{}", unique_acquisition_id())
}

pub(crate) fn config(
    name: &str,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
) -> LockConfiguration {
    LockConfiguration::new(name, lock_at_most_for, lock_at_least_for)
        .unwrap_or_else(|err| fail!("test configuration rejected: {err}"))
}

/// A configuration of `name` with a long lease and no `lock_at_least_for`.
pub(crate) fn config_named(name: &str) -> LockConfiguration {
    config(name, LONG, Duration::ZERO)
}

/// Takes `config`'s lock, which must be free; a test failure otherwise.
pub async fn acquire<P: LockProvider>(provider: &P, config: &LockConfiguration) -> LockGuard {
    match provider.try_lock(config).await {
        Ok(Some(guard)) => guard,
        Ok(None) => fail!("lock '{}' should be free, but it is held", config.name()),
        Err(err) => fail!("lock '{}' failed: {err}", config.name()),
    }
}

/// Fails the test unless an attempt at `config`'s lock is refused
/// (`Ok(None)`) because it is held.
pub async fn assert_held<P: LockProvider>(provider: &P, config: &LockConfiguration) {
    assert_refused(provider, config, "held").await;
}

/// Fails the test unless an attempt at `config`'s lock is refused
/// (`Ok(None)`) because it is paused.
pub async fn assert_skipped<P: LockProvider>(provider: &P, config: &LockConfiguration) {
    assert_refused(provider, config, "paused").await;
}

async fn assert_refused<P: LockProvider>(provider: &P, config: &LockConfiguration, why: &str) {
    match provider.try_lock(config).await {
        Ok(None) => {}
        Ok(Some(guard)) => {
            let token = token_of(&guard).await;
            let _ = guard.unlock().await;
            fail!(
                "lock '{}' should be {why}, but was taken (token {token})",
                config.name()
            )
        }
        Err(err) => fail!("lock '{}' failed: {err}", config.name()),
    }
}

/// Takes the free lock, reads its fencing token, and releases it.
pub async fn token_of_a_cycle<P: LockProvider>(provider: &P, config: &LockConfiguration) -> u64 {
    let guard = acquire(provider, config).await;
    let token = token_of(&guard).await;
    unlock(guard).await;
    token
}

/// `holder` holds `config`'s lock, and `waiter`, watching for its release,
/// is refused once as a waiter (which asks for the notification): the
/// holder's guard and the waiter's watch.
pub async fn held_and_watched<P: LockProvider>(
    holder: &P,
    waiter: &P,
    config: &LockConfiguration,
) -> (LockGuard, ReleaseWatch) {
    let guard = acquire(holder, config).await;
    let releases = waiter.watch_releases(config.name()).await;
    let waiting = Waiter::new(Duration::from_secs(2));
    match waiter.try_lock_waiting(config, &waiting).await {
        Ok(None) => {}
        other => fail!("the lock is held: the waiter must be refused, not {other:?}"),
    }
    (guard, releases)
}

/// Fails the test unless the release `releases` watches comes within 5 s;
/// `missed` says what did not happen. Only a notification ends this wait:
/// nothing polls.
pub async fn assert_release_published(releases: &mut ReleaseWatch, missed: &str) {
    if tokio::time::timeout(Duration::from_secs(5), releases.released())
        .await
        .is_err()
    {
        fail!("{missed}");
    }
}

/// Fails the test unless the locked run `ran` ran and returned `value`;
/// `what` names the run.
pub fn assert_ran_with<T: PartialEq + std::fmt::Debug>(
    ran: &Result<Option<T>, LockError>,
    value: T,
    what: impl std::fmt::Display,
) {
    assert_eq!(ran.as_ref().ok(), Some(&Some(value)), "{what}: {ran:?}");
}

/// Fails the test unless `result` is `LockError::LeaseLost`.
pub fn assert_lease_lost<T: std::fmt::Debug>(result: &Result<T, LockError>) {
    assert!(
        matches!(result, Err(LockError::LeaseLost { .. })),
        "expected LeaseLost, got {result:?}"
    );
}

/// Fails the test unless `result` is `LockError::LeaseLost`, within `bound`
/// of `started`.
pub fn assert_lease_lost_within<T: std::fmt::Debug>(
    result: &Result<T, LockError>,
    started: std::time::Instant,
    bound: Duration,
) {
    assert_lease_lost(result);
    let took = started.elapsed();
    assert!(
        took < bound,
        "the lease loss ended the run only after {took:?}"
    );
}

/// Releases `guard`; a test failure when the release fails.
pub async fn unlock(guard: LockGuard) {
    let name = guard.name().to_owned();
    if let Err(err) = guard.unlock().await {
        fail!("unlocking '{name}' failed: {err}");
    }
}

pub(crate) async fn extend(guard: &mut LockGuard, lock_at_most_for: Duration) -> bool {
    match guard.extend(lock_at_most_for, Duration::ZERO).await {
        Ok(extended) => extended,
        Err(err) => fail!("extending '{}' failed: {err}", guard.name()),
    }
}

/// A job waiting (up to 20 s) for its lock in a task of its own, and whether
/// the test had come to the moment it waits for (a release, a resume) when
/// the job ran.
pub(crate) struct WaitingJob {
    come: Arc<AtomicBool>,
    task: JoinHandle<Result<Option<bool>, LockError>>,
}

impl WaitingJob {
    pub(crate) fn spawn<P: LockProvider>(
        executor: LockingTaskExecutor<P>,
        job: LockConfiguration,
    ) -> WaitingJob {
        let come = Arc::new(AtomicBool::new(false));
        let seen = come.clone();
        let task = tokio::spawn(async move {
            executor
                .execute_waiting(&job, Duration::from_secs(20), async move {
                    seen.load(Ordering::SeqCst)
                })
                .await
        });
        WaitingJob { come, task }
    }

    /// Gives the job 300 ms to queue, then lets it in by `moment` (a
    /// release, a resume: `what`); fails the test unless the job runs within
    /// `within` of it, and not before it.
    pub(crate) async fn let_in<T>(
        self,
        what: &str,
        within: Duration,
        moment: impl Future<Output = T>,
    ) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.come.store(true, Ordering::SeqCst);
        moment.await;
        let come = self.ran_within(within, what).await;
        assert!(come, "the waiter ran before {what}");
    }

    /// Fails the test unless the job runs within `within`, after `what`
    /// (which the messages name); returns whether the moment had come when
    /// it ran.
    pub(crate) async fn ran_within(self, within: Duration, what: &str) -> bool {
        let ran = tokio::time::timeout(within, self.task)
            .await
            .unwrap_or_else(|_| fail!("the waiter did not run within {within:?} of {what}"));
        match ran {
            Ok(Ok(Some(come))) => come,
            other => fail!("the waiter should have run after {what}: {other:?}"),
        }
    }
}

/// Generates one `#[tokio::test]` per conformance case for a provider.
///
/// `$make` is a function (or closure) that returns a future of a new provider;
/// the calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
#[macro_export]
macro_rules! provider_conformance_tests {
    ($make:expr) => {
        $crate::__test_cases!(conformance, $make;
            lock_and_unlock,
            second_lock_refused_while_held,
            two_names_are_independent,
            lock_twice_in_a_row,
            lease_ends_after_lock_at_most_for,
            lock_right_after_unlock,
            lock_at_least_for_keeps_lock_after_unlock,
            unlock_after_lock_at_least_for_frees_at_once,
            extend_keeps_the_lease,
            extend_several_times,
            extend_after_lease_ended_never_touches_next_holder,
            extend_after_unlock_returns_false,
            unlock_after_lease_ended_never_frees_next_holder,
            dropped_guard_is_released,
            fencing_tokens_strictly_increase,
            no_lost_updates_under_concurrency,
            waiter_runs_right_after_release,
            waiter_gives_up_at_its_bound,
            waiters_run_one_at_a_time,
            waiter_takes_over_when_an_abandoned_lease_ends,
            retries_get_the_lock_once_released,
            keep_alive_holds_a_short_lease_through_a_long_job,
            job_outliving_its_lease_is_cancelled,
            a_claimed_tick_is_not_claimed_again,
            later_ticks_are_claimed_earlier_ones_not,
            a_tick_is_claimed_only_with_the_lock,
            racing_replicas_claim_each_tick_once,
            a_shared_tick_claim_is_refused,
        );
    };
}
