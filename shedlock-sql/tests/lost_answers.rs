//! An acquisition whose answer does not come in time (here: its row is
//! locked by another transaction, so the statement waits past the statement
//! timeout) is reported as `AcquisitionUncertain`, not as "held", and the
//! lease it may take once the statement goes through is released in the
//! background by its unique `locked_by`, long before `lock_at_most_for`.

use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_sql::sqlx::{self, Acquire};
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider};
use shedlock_test_support::sql::{
    database_unreachable, mysql_url, postgres_url, unique_table_name,
};

const LEASE: Duration = Duration::from_secs(60);

fn config() -> LockConfiguration {
    LockConfiguration::new("lost-answer", LEASE, Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Waits until `provider` gets the lock, and returns how long that took.
async fn free_within<P: LockProvider>(provider: &P, bound: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < bound {
        if let Ok(Some(guard)) = provider.try_lock(&config()).await {
            guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the lock was not free within {bound:?}: the uncertain acquisition was not released");
}

fn assert_uncertain(result: Result<Option<shedlock_core::LockGuard>, LockError>) {
    match result {
        Err(LockError::AcquisitionUncertain { released, .. }) => {
            // The statement still waits for the row lock: nothing is released yet.
            assert!(!released, "the release cannot have gone through yet");
        }
        other => panic!("a timed-out acquisition must be AcquisitionUncertain: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_timed_out_acquisition_is_uncertain_and_released_later() {
    let table = unique_table_name("lost");
    let connect = || async {
        PostgresLockProvider::connect(&postgres_url())
            .await
            .unwrap_or_else(|err| database_unreachable("postgres", &err))
            .with_table_name(&table)
            .unwrap_or_else(|err| panic!("{err}"))
    };
    let (impatient, other) = (connect().await, connect().await);
    impatient
        .create_table_if_missing()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    // The row exists and is free.
    let guard = other
        .try_lock(&config())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free"));
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));

    let mut blocker = other
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let mut transaction = blocker.begin().await.unwrap_or_else(|err| panic!("{err}"));
    sqlx::query(&format!(
        "SELECT name FROM {table} WHERE name = $1 FOR UPDATE"
    ))
    .bind(config().name())
    .fetch_all(&mut *transaction)
    .await
    .unwrap_or_else(|err| panic!("{err}"));

    let impatient = impatient.with_statement_timeout(Duration::from_millis(300));
    assert_uncertain(impatient.try_lock(&config()).await);
    // The statement goes through once the row lock is gone; its lease must
    // be released in the background, not held for the 60 s lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    transaction
        .commit()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let took = free_within(&other, Duration::from_secs(15)).await;
    eprintln!("postgres: free again {took:?} after the blocking transaction ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_timed_out_acquisition_is_uncertain_and_released_later() {
    let table = unique_table_name("lost");
    let connect = || async {
        MySqlLockProvider::connect(&mysql_url())
            .await
            .unwrap_or_else(|err| database_unreachable("mysql", &err))
            .with_table_name(&table)
            .unwrap_or_else(|err| panic!("{err}"))
    };
    let (impatient, other) = (connect().await, connect().await);
    impatient
        .create_table_if_missing()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let guard = other
        .try_lock(&config())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free"));
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));

    let mut blocker = other
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let mut transaction = blocker.begin().await.unwrap_or_else(|err| panic!("{err}"));
    sqlx::query(&format!(
        "SELECT name FROM {table} WHERE name = ? FOR UPDATE"
    ))
    .bind(config().name())
    .fetch_all(&mut *transaction)
    .await
    .unwrap_or_else(|err| panic!("{err}"));

    let impatient = impatient.with_statement_timeout(Duration::from_millis(300));
    assert_uncertain(impatient.try_lock(&config()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    transaction
        .commit()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let took = free_within(&other, Duration::from_secs(15)).await;
    eprintln!("mysql: free again {took:?} after the blocking transaction ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_acquisition_releases_what_it_takes_later() {
    let table = unique_table_name("cancelled");
    let connect = || async {
        PostgresLockProvider::connect(&postgres_url())
            .await
            .unwrap_or_else(|err| database_unreachable("postgres", &err))
            .with_table_name(&table)
            .unwrap_or_else(|err| panic!("{err}"))
    };
    let (cancelled, other) = (connect().await, connect().await);
    cancelled
        .create_table_if_missing()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let guard = other
        .try_lock(&config())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free"));
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));

    let mut blocker = other
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let mut transaction = blocker.begin().await.unwrap_or_else(|err| panic!("{err}"));
    sqlx::query(&format!(
        "SELECT name FROM {table} WHERE name = $1 FOR UPDATE"
    ))
    .bind(config().name())
    .fetch_all(&mut *transaction)
    .await
    .unwrap_or_else(|err| panic!("{err}"));

    // The caller gives up (drops the future) while the statement waits.
    let config = config();
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), cancelled.try_lock(&config)).await;
    assert!(gave_up.is_err(), "the acquisition should still be waiting");
    transaction
        .commit()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let took = free_within(&other, Duration::from_secs(15)).await;
    eprintln!("postgres: free again {took:?} after the cancelled acquisition went through");
}
