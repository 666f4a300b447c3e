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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::identity::unique_acquisition_id;
use shedlock_core::{
    ExecutionOptions, LockConfiguration, LockError, LockGuard, LockProvider, LockingTaskExecutor,
    is_lease_lost,
};

pub(crate) const LONG: Duration = Duration::from_secs(30);
/// A lease short enough to wait out in a test.
pub(crate) const SHORT: Duration = Duration::from_millis(300);
/// Longer than [`SHORT`] by a margin for a loaded machine.
pub(crate) const PAST_SHORT: Duration = Duration::from_millis(600);

/// The guard's fencing token; a test failure when it cannot be had.
pub(crate) async fn token_of(guard: &LockGuard) -> u64 {
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

pub(crate) async fn acquire<P: LockProvider>(
    provider: &P,
    config: &LockConfiguration,
) -> LockGuard {
    match provider.try_lock(config).await {
        Ok(Some(guard)) => guard,
        Ok(None) => fail!("lock '{}' should be free, but it is held", config.name()),
        Err(err) => fail!("lock '{}' failed: {err}", config.name()),
    }
}

pub(crate) async fn assert_held<P: LockProvider>(provider: &P, config: &LockConfiguration) {
    match provider.try_lock(config).await {
        Ok(None) => {}
        Ok(Some(guard)) => {
            let token = token_of(&guard).await;
            let _ = guard.unlock().await;
            fail!(
                "lock '{}' should be held, but was taken again (token {token})",
                config.name()
            )
        }
        Err(err) => fail!("lock '{}' failed: {err}", config.name()),
    }
}

pub(crate) async fn unlock(guard: LockGuard) {
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

/// A lock can be taken and released, and is free again afterwards.
pub async fn lock_and_unlock<P: LockProvider, Fut: Future<Output = P>>(make: impl Fn() -> Fut) {
    let provider = make().await;
    let config = config(&unique_name("lock-unlock"), LONG, Duration::ZERO);
    let guard = acquire(&provider, &config).await;
    assert_eq!(guard.name(), config.name());
    unlock(guard).await;
    unlock(acquire(&provider, &config).await).await;
}

/// While one holder has a lock, a second attempt (another connection) gets `None`.
pub async fn second_lock_refused_while_held<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("refused"), LONG, Duration::ZERO);
    let guard = acquire(&first, &config).await;
    assert_held(&second, &config).await;
    assert_held(&first, &config).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// Locks of different names do not exclude each other.
pub async fn two_names_are_independent<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let provider = make().await;
    let a = config(&unique_name("independent-a"), LONG, Duration::ZERO);
    let b = config(&unique_name("independent-b"), LONG, Duration::ZERO);
    let guard_a = acquire(&provider, &a).await;
    let guard_b = acquire(&provider, &b).await;
    unlock(guard_a).await;
    assert_held(&provider, &b).await;
    unlock(guard_b).await;
}

/// Taking a held lock twice from the same provider is refused the second time.
pub async fn lock_twice_in_a_row<P: LockProvider, Fut: Future<Output = P>>(make: impl Fn() -> Fut) {
    let provider = make().await;
    let config = config(&unique_name("twice"), LONG, Duration::ZERO);
    let guard = acquire(&provider, &config).await;
    assert!(
        matches!(provider.try_lock(&config).await, Ok(None)),
        "a second try_lock on a held lock must return Ok(None)"
    );
    unlock(guard).await;
}

/// A lease ends `lock_at_most_for` after acquisition even if never released.
pub async fn lease_ends_after_lock_at_most_for<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("lease-ends"), SHORT, Duration::ZERO);
    let abandoned = acquire(&first, &config).await;
    assert_held(&second, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    std::mem::forget(abandoned); // a crashed holder never releases
    unlock(next).await;
}

/// Lock, unlock, lock again: ten times in a row, with no gap.
pub async fn lock_right_after_unlock<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let provider = make().await;
    let config = config(&unique_name("relock"), LONG, Duration::ZERO);
    for _ in 0..10 {
        unlock(acquire(&provider, &config).await).await;
    }
}

/// `unlock` before `lock_at_least_for` keeps the lock until then, and frees it after.
pub async fn lock_at_least_for_keeps_lock_after_unlock<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("at-least"), LONG, Duration::from_millis(800));
    unlock(acquire(&first, &config).await).await;
    assert_held(&second, &config).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    unlock(acquire(&second, &config).await).await;
}

/// `unlock` after `lock_at_least_for` has passed frees the lock at once.
pub async fn unlock_after_lock_at_least_for_frees_at_once<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(
        &unique_name("at-least-passed"),
        LONG,
        Duration::from_millis(100),
    );
    let guard = acquire(&first, &config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// An extension keeps the lease past its original end.
pub async fn extend_keeps_the_lease<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("extend"), SHORT, Duration::ZERO);
    let mut guard = acquire(&first, &config).await;
    assert!(
        extend(&mut guard, LONG).await,
        "extending a held lease must succeed"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_held(&second, &config).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// Several extensions in a row keep the lease each time.
pub async fn extend_several_times<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("extend-many"), SHORT, Duration::ZERO);
    let mut guard = acquire(&first, &config).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            extend(&mut guard, SHORT).await,
            "extending a held lease must succeed"
        );
    }
    // 600 ms have passed: without the extensions the 300 ms lease would have ended.
    assert_held(&second, &config).await;
    unlock(guard).await;
}

/// Extending a lease that ended (and was taken by someone else) returns
/// `false` and leaves the next holder's lock alone.
pub async fn extend_after_lease_ended_never_touches_next_holder<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (first, second, third) = (make().await, make().await, make().await);
    let config = config(&unique_name("extend-stale"), SHORT, Duration::ZERO);
    let mut stale = acquire(&first, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    assert!(
        !extend(&mut stale, LONG).await,
        "a stale extension must return false"
    );
    // The next holder's 300 ms lease was not stretched to LONG by the stale guard.
    assert_held(&third, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&third, &config).await).await;
    drop(next);
    drop(stale);
}

/// Extending after the lease ended and the next holder unlocked returns
/// `false` and does not take the lock back.
pub async fn extend_after_unlock_returns_false<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("extend-unlocked"), SHORT, Duration::ZERO);
    let mut stale = acquire(&first, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&second, &config).await).await;
    assert!(
        !extend(&mut stale, LONG).await,
        "a stale extension must return false"
    );
    unlock(acquire(&second, &config).await).await;
    unlock(stale).await;
}

/// Unlocking a lease that ended never frees the next holder's lock.
pub async fn unlock_after_lease_ended_never_frees_next_holder<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (first, second, third) = (make().await, make().await, make().await);
    let config = config(&unique_name("unlock-stale"), SHORT, Duration::ZERO);
    let stale = acquire(&first, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    unlock(stale).await;
    assert_held(&third, &config).await;
    unlock(next).await;
    unlock(acquire(&third, &config).await).await;
}

/// A dropped guard is released in the background.
pub async fn dropped_guard_is_released<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("dropped"), LONG, Duration::ZERO);
    drop(acquire(&first, &config).await);
    for _ in 0..100 {
        if let Ok(Some(guard)) = second.try_lock(&config).await {
            unlock(guard).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fail!("a dropped guard was not released within 2 s");
}

/// Fencing tokens of one name strictly increase across holders and connections.
pub async fn fencing_tokens_strictly_increase<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (first, second) = (make().await, make().await);
    let config = config(&unique_name("fencing"), LONG, Duration::ZERO);
    let other = config_named(&unique_name("fencing-other"));
    let mut last = 0;
    for round in 0..10 {
        let provider = if round % 2 == 0 { &first } else { &second };
        // Interleave another name: tokens of a name must still grow.
        unlock(acquire(provider, &other).await).await;
        let guard = acquire(provider, &config).await;
        assert!(
            token_of(&guard).await > last,
            "token {} after token {last}: fencing tokens must strictly increase",
            token_of(&guard).await
        );
        last = token_of(&guard).await;
        unlock(guard).await;
    }
}

fn config_named(name: &str) -> LockConfiguration {
    config(name, LONG, Duration::ZERO)
}

/// 8 tasks (each with its own provider) on 2 names run a non-atomic
/// read–sleep–write counter under the lock: no update is lost.
pub async fn no_lost_updates_under_concurrency<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    const TASKS: usize = 8;
    const ATTEMPTS: usize = 60;
    let names = [unique_name("fuzz-a"), unique_name("fuzz-b")];
    let counters: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let runs: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let executor = LockingTaskExecutor::new(make().await);
        let configs = names.clone().map(|name| config_named(&name));
        let (counters, runs) = (counters.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            for attempt in 0..ATTEMPTS {
                let which = (task + attempt) % 2;
                let counter = &counters[which];
                let ran = executor
                    .execute(&configs[which], async {
                        let seen = counter.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        counter.store(seen + 1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap_or_else(|err| fail!("execute failed: {err}"));
                if ran.is_some() {
                    runs[which].fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        if let Err(err) = task.await {
            fail!("a fuzz task failed: {err}");
        }
    }
    for which in 0..2 {
        let (counter, ran) = (
            counters[which].load(Ordering::SeqCst),
            runs[which].load(Ordering::SeqCst),
        );
        assert!(ran > 0, "no task ever got lock {which}");
        assert_eq!(
            counter, ran,
            "lock {which}: {ran} runs but the counter says {counter}: an update was lost"
        );
    }
}

/// A waiter runs as soon as the holder releases, long before its bound.
pub async fn waiter_runs_right_after_release<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (holder, waiter) = (make().await, LockingTaskExecutor::new(make().await));
    let config = config(&unique_name("waiter"), LONG, Duration::ZERO);
    let guard = acquire(&holder, &config).await;
    let released = Arc::new(AtomicU64::new(0));
    let seen = released.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .execute_waiting(&config, Duration::from_secs(20), async move {
                seen.load(Ordering::SeqCst)
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    released.store(1, Ordering::SeqCst);
    unlock(guard).await;
    let ran = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| fail!("the waiter did not run within 10 s of the release"));
    match ran {
        Ok(Ok(Some(seen))) => assert_eq!(seen, 1, "the waiter ran before the release"),
        other => fail!("the waiter should have run: {other:?}"),
    }
}

/// A waiter gives `Ok(None)` once `wait_for` passes, not before.
pub async fn waiter_gives_up_at_its_bound<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (holder, waiter) = (make().await, LockingTaskExecutor::new(make().await));
    let config = config(&unique_name("waiter-bound"), LONG, Duration::ZERO);
    let guard = acquire(&holder, &config).await;
    let started = std::time::Instant::now();
    let ran = waiter
        .execute_waiting(&config, Duration::from_millis(500), async {})
        .await
        .unwrap_or_else(|err| fail!("waiting failed: {err}"));
    assert!(ran.is_none(), "the lock was held: the waiter must not run");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "gave up before its bound"
    );
    unlock(guard).await;
}

/// Five waiters on one name, each holding briefly, all run, one at a time.
pub async fn waiters_run_one_at_a_time<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let config = config_named(&unique_name("waiters"));
    let inside = Arc::new(AtomicU64::new(0));
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let executor = LockingTaskExecutor::new(make().await);
        let (config, inside) = (config.clone(), inside.clone());
        waiters.push(tokio::spawn(async move {
            executor
                .execute_waiting(&config, Duration::from_secs(30), async {
                    let others = inside.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    others
                })
                .await
        }));
    }
    for waiter in waiters {
        match waiter.await {
            Ok(Ok(Some(others))) => assert_eq!(others, 0, "two waiters ran at once"),
            other => fail!("every waiter should run: {other:?}"),
        }
    }
}

/// A waiter takes over an abandoned lease (a crashed holder) when it ends,
/// never before: the provider tells waiters when the holder's lease ends.
pub async fn waiter_takes_over_when_an_abandoned_lease_ends<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (crashed, waiter) = (make().await, LockingTaskExecutor::new(make().await));
    let lease = Duration::from_millis(800);
    let config = config(&unique_name("abandoned"), lease, Duration::ZERO);
    let acquired_at = std::time::Instant::now();
    std::mem::forget(acquire(&crashed, &config).await); // never released
    let ran = waiter
        .execute_waiting(&config, Duration::from_secs(10), async {
            std::time::Instant::now()
        })
        .await
        .unwrap_or_else(|err| fail!("waiting failed: {err}"));
    let Some(started) = ran else {
        fail!("the waiter never got the abandoned lock");
    };
    let after_end = started.saturating_duration_since(acquired_at + lease);
    assert!(
        started >= acquired_at + lease,
        "the waiter got in before the lease ended"
    );
    // A figure, not a speed assertion: the bound only catches a waiter that
    // slept through the end (polling alone would take up to 500 ms).
    assert!(
        after_end < Duration::from_secs(2),
        "took over {after_end:?} after the lease end"
    );
    eprintln!("abandoned lease taken over {after_end:?} after its end");
}

/// Retrying gets the lock once the holder lets go within the retries.
pub async fn retries_get_the_lock_once_released<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (holder, retrier) = (make().await, LockingTaskExecutor::new(make().await));
    let config = config(&unique_name("retry"), LONG, Duration::ZERO);
    let guard = acquire(&holder, &config).await;
    let none = retrier
        .lock_retrying(&config, 2, Duration::from_millis(50))
        .await
        .unwrap_or_else(|err| fail!("retrying failed: {err}"));
    assert!(
        none.is_none(),
        "retries must give up while the lock is held"
    );
    let release = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        unlock(guard).await;
    };
    let (taken, ()) = tokio::join!(
        retrier.lock_retrying(&config, 20, Duration::from_millis(100)),
        release
    );
    match taken {
        Ok(Some(guard)) => unlock(guard).await,
        other => fail!("retries should get the released lock: {other:?}"),
    }
}

/// Keep-alive holds a 2 s lease through a 10 s job while another node tries
/// every 100 ms and never gets in; the lock is free after the job.
pub async fn keep_alive_holds_a_short_lease_through_a_long_job<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (runner, other) = (LockingTaskExecutor::new(make().await), make().await);
    let config = config(
        &unique_name("keep-alive"),
        Duration::from_secs(2),
        Duration::ZERO,
    );
    let options = ExecutionOptions::new().keep_alive(true);
    let job = runner.execute_with(&config, options, async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        is_lease_lost()
    });
    // Tries until 9.5 s (by the clock, not by a count of attempts: slow
    // attempts must not carry the last ones past the job's end at 10 s).
    let stop_at = Instant::now() + Duration::from_millis(9_500);
    let intruder = async {
        let mut attempts = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(Some(guard)) = other.try_lock(&config).await {
                return (attempts, Some(guard));
            }
            attempts += 1;
            if Instant::now() >= stop_at {
                return (attempts, None);
            }
        }
    };
    let (ran, (attempts, intruded)) = tokio::join!(job, intruder);
    assert!(
        intruded.is_none(),
        "another node got in after {attempts} attempts"
    );
    assert_eq!(
        ran.ok(),
        Some(Some(false)),
        "the job must run with its lease intact"
    );
    unlock(acquire(&other, &config).await).await;
}

/// With `cancel_on_lease_loss`, a job that outlives its lease (no keep-alive)
/// is dropped and the call returns `LockError::LeaseLost`.
pub async fn job_outliving_its_lease_is_cancelled<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let runner = LockingTaskExecutor::new(make().await);
    let config = config(
        &unique_name("cancel"),
        Duration::from_millis(500),
        Duration::ZERO,
    );
    let options = ExecutionOptions::new().cancel_on_lease_loss(true);
    let finished = Arc::new(AtomicU64::new(0));
    let result = runner
        .execute_with(&config, options, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.store(1, Ordering::SeqCst);
        })
        .await;
    assert!(
        matches!(result, Err(LockError::LeaseLost { .. })),
        "expected LeaseLost, got {result:?}"
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the job must have been dropped"
    );
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
        );
    };
}
