//! Executor behaviour beyond the conformance suite: reentrancy scope, the
//! lease watcher following the job's own extensions, overflow-safe waiting.

use shedlock_test_support::conformance::assert_lease_lost_within;
use std::time::{Duration, Instant};

use shedlock_core::{
    ExecutionOptions, InMemoryLockProvider, LockConfiguration, LockingTaskExecutor,
    extend_active_lock,
};

fn config(name: &str, most: Duration, least: Duration) -> LockConfiguration {
    LockConfiguration::new(name, most, least).unwrap()
}

#[tokio::test]
async fn a_nested_call_on_the_same_name_in_another_store_takes_that_stores_lock() {
    let (here, there) = (InMemoryLockProvider::new(), InMemoryLockProvider::new());
    let outer = LockingTaskExecutor::new(here.clone());
    let inner = LockingTaskExecutor::new(there.clone());
    let sync = config("sync", Duration::from_secs(10), Duration::ZERO);
    let nested = outer
        .execute(&sync, async {
            // Same store: reentrant. Other store: a real acquisition there.
            let same = outer.execute(&sync, async { here.is_locked("sync") }).await;
            let other = inner
                .execute(&sync, async { there.is_locked("sync") })
                .await;
            (same.unwrap(), other.unwrap())
        })
        .await
        .unwrap();
    assert_eq!(nested, Some((Some(true), Some(true))));
    assert!(
        !there.is_locked("sync"),
        "the other store's lock was released"
    );
}

#[tokio::test]
async fn a_job_that_shortens_its_lease_is_cancelled_when_the_shorter_lease_ends() {
    let provider = InMemoryLockProvider::new();
    let executor = LockingTaskExecutor::new(provider);
    let options = ExecutionOptions::new().cancel_on_lease_loss(true);
    let started = Instant::now();
    let result = executor
        .execute_with(
            config("shortened", Duration::from_secs(30), Duration::ZERO),
            options,
            async {
                extend_active_lock(Duration::from_millis(300), Duration::ZERO)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
            },
        )
        .await;
    assert_lease_lost_within(&result, started, Duration::from_secs(3));
}

#[tokio::test]
async fn keep_alive_keeps_the_longer_lease_a_job_asked_for() {
    let provider = InMemoryLockProvider::new();
    let executor = LockingTaskExecutor::new(provider.clone());
    let options = ExecutionOptions::new().keep_alive(true);
    executor
        .execute_with(
            config("longer", Duration::from_millis(600), Duration::ZERO),
            options,
            async {
                extend_active_lock(Duration::from_secs(10), Duration::from_secs(3))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await; // keep-alive renews meanwhile
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        provider.is_locked("longer"),
        "lock_at_least_for of the job's extension was cut short"
    );
}

#[tokio::test]
async fn waiting_without_bound_does_not_overflow() {
    let executor = LockingTaskExecutor::new(InMemoryLockProvider::new());
    let ran = executor
        .execute_waiting(
            config("forever", Duration::from_secs(1), Duration::ZERO),
            Duration::MAX,
            async { 7 },
        )
        .await
        .unwrap();
    assert_eq!(ran, Some(7));
}
