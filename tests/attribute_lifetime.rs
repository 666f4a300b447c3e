//! `wait_for`, `keep_alive` and `cancel_on_lease_loss` through the attribute.

use shedlock_test_support::conformance::assert_lease_lost_within;
use std::sync::LazyLock;
use std::time::Duration;

use shedlock::{InMemoryLockProvider, current_lock, scheduler_lock};

static LOCKS: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "slow", lock_at_most_for = "10s", provider = &*LOCKS)]
async fn slow(hold: Duration) {
    tokio::time::sleep(hold).await;
}

#[scheduler_lock(name = "slow", lock_at_most_for = "10s", wait_for = "5s", provider = &*LOCKS)]
async fn patient() -> u64 {
    match current_lock() {
        Some(lock) => lock
            .fencing_token()
            .await
            .expect("a fencing token while the lease is held"),
        None => 0,
    }
}

#[scheduler_lock(name = "slow", lock_at_most_for = "10s", wait_for = "200ms", provider = &*LOCKS)]
async fn impatient() {}

#[tokio::test]
async fn wait_for_runs_once_the_holder_is_done_and_gives_up_at_its_bound() {
    let holder = tokio::spawn(slow(Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(impatient().await.unwrap(), None, "gave up after 200 ms");
    let token = patient().await.unwrap();
    assert!(
        matches!(token, Some(token) if token > 0),
        "the waiter should run: {token:?}"
    );
    holder.await.unwrap().unwrap();
}

#[scheduler_lock(name = "kept", lock_at_most_for = "600ms", keep_alive = true, provider = &*LOCKS)]
async fn kept_alive() -> bool {
    tokio::time::sleep(Duration::from_secs(2)).await;
    LOCKS.is_locked("kept") && !shedlock::is_lease_lost()
}

#[tokio::test]
async fn keep_alive_holds_the_lock_past_lock_at_most_for() {
    assert_eq!(kept_alive().await.unwrap(), Some(true));
    assert!(!LOCKS.is_locked("kept"), "released after the job");
}

#[scheduler_lock(name = "overrun", lock_at_most_for = "300ms", cancel_on_lease_loss = true, provider = &*LOCKS)]
async fn overrunning() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn cancel_on_lease_loss_stops_a_job_that_outlives_its_lease() {
    let started = std::time::Instant::now();
    let result = overrunning().await;
    // Within 5 s: the body was dropped.
    assert_lease_lost_within(&result, started, Duration::from_secs(5));
}
