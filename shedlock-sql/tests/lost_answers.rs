//! An acquisition whose answer does not come in time (here: its row is
//! locked by another transaction, so the statement waits past the statement
//! timeout) is reported as `AcquisitionUncertain`, not as "held", and the
//! lease it may take once the statement goes through is released in the
//! background by its unique `locked_by`, long before `lock_at_most_for`.

use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_sql::sqlx::{Database, Executor, Pool, Transaction};
use shedlock_test_support::sql::unique_table_name;

mod support;

const LEASE: Duration = Duration::from_secs(60);
const NAME: &str = "lost-answer";

fn config() -> LockConfiguration {
    LockConfiguration::new(NAME, LEASE, Duration::ZERO).unwrap_or_else(|err| panic!("{err}"))
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

/// Makes the lock's row in `table` (taking and releasing it through `other`),
/// then holds it (`FOR UPDATE`) in a transaction on `pool` until that
/// transaction ends: acquisitions of the lock wait until then.
async fn hold_the_row<P, DB>(other: &P, pool: &Pool<DB>, table: &str) -> Transaction<'static, DB>
where
    P: LockProvider,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let guard = other
        .try_lock(&config())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free"));
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    let mut transaction = pool.begin().await.unwrap_or_else(|err| panic!("{err}"));
    let hold = format!("SELECT name FROM {table} WHERE name = '{NAME}' FOR UPDATE");
    (&mut *transaction)
        .execute(hold.as_str())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    transaction
}

/// `impatient` (a short statement timeout) asks for the lock while its row
/// is held: the answer is uncertain, and the lease the statement takes once
/// the row is free again is released in the background, not held for the
/// 60 s lease.
async fn timed_out_acquisition_is_uncertain_and_released_later<P, DB>(
    impatient: &P,
    other: &P,
    pool: &Pool<DB>,
    table: &str,
) -> Duration
where
    P: LockProvider,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let transaction = hold_the_row(other, pool, table).await;
    assert_uncertain(impatient.try_lock(&config()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    transaction
        .commit()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    free_within(other, Duration::from_secs(15)).await
}

/// The timed-out acquisition test `$test` on the test server of `$store`.
macro_rules! timed_out_acquisition_test {
    ($test:ident, $store:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let table = unique_table_name("lost");
            let (impatient, other) = (support::$store(&table).await, support::$store(&table).await);
            let impatient = impatient.with_statement_timeout(Duration::from_millis(300));
            let took = timed_out_acquisition_is_uncertain_and_released_later(
                &impatient,
                &other,
                other.pool(),
                &table,
            )
            .await;
            eprintln!(
                "{}: free again {took:?} after the blocking transaction ended",
                stringify!($store)
            );
        }
    };
}

timed_out_acquisition_test!(
    postgres_timed_out_acquisition_is_uncertain_and_released_later,
    postgres
);
timed_out_acquisition_test!(
    mysql_timed_out_acquisition_is_uncertain_and_released_later,
    mysql
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancelled_acquisition_releases_what_it_takes_later() {
    let table = unique_table_name("cancelled");
    let (cancelled, other) = (
        support::postgres(&table).await,
        support::postgres(&table).await,
    );
    let transaction = hold_the_row(&other, other.pool(), &table).await;

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
