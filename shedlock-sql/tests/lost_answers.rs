//! Acquisitions whose answer is late or lost, because another transaction
//! holds the lock's row (a stalled client's renewal or lock-kinds
//! transaction):
//!
//! - an answer that does not come within the statement timeout is
//!   `AcquisitionUncertain`, not "held", and the lease it may take once the
//!   statement goes through is released in the background by its unique
//!   `locked_by`, long before `lock_at_most_for`;
//! - an answer that comes after the row wait takes a lease counted by the
//!   database's clock read after the wait, and the guard's lease is counted
//!   from the request: two waiters never both win, and no guard comes back
//!   with a lease that has already ended.

use std::time::{Duration, Instant};

use shedlock_core::{LockAdmin, LockConfiguration, LockError, LockGuard, LockProvider};
use shedlock_sql::sqlx::{self, Connection, Database, Executor, Pool, Transaction};
use shedlock_test_support::conformance::acquire;
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
    let guard = acquire(other, &config()).await;
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

/// The lease of the row-wait tests: shorter than the row is held.
const SHORT_LEASE: Duration = Duration::from_secs(1);
/// How long the row is held while two acquisitions wait for it.
const ROW_HELD_FOR: Duration = Duration::from_secs(2);

fn short_config() -> LockConfiguration {
    LockConfiguration::new(NAME, SHORT_LEASE, Duration::ZERO).unwrap_or_else(|err| panic!("{err}"))
}

/// `first` asks for the lock at once and `second` after 1.2 s, both while
/// another transaction holds the lock's row (released at 2 s; the lease is
/// 1 s, so by the statement's start-of-statement clock both leases would
/// have ended by then). At most one of them holds the lock, and whoever
/// does has a lease that has not ended by its own clock.
async fn two_waiters_for_a_held_row_never_both_win<P: LockProvider>(
    first: &P,
    second: &P,
    release_row: impl Future<Output = ()>,
) {
    let config = short_config();
    let (first, second, ()) = tokio::join!(
        async { first.try_lock(&config).await },
        async {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            second.try_lock(&config).await
        },
        async {
            tokio::time::sleep(ROW_HELD_FOR).await;
            release_row.await;
        },
    );
    let answered = Instant::now();
    let winners: Vec<LockGuard> = [first, second]
        .into_iter()
        .filter_map(|answer| answer.unwrap_or_else(|err| panic!("the acquisition failed: {err}")))
        .collect();
    for guard in &winners {
        assert!(
            guard.lease_until() > answered,
            "a guard came back with a lease that had already ended ({:?} ago)",
            answered - guard.lease_until()
        );
    }
    assert!(
        winners.len() <= 1,
        "both waiters took the lock: tokens {:?}",
        tokens_of(&winners).await
    );
    for guard in winners {
        guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    }
}

/// `waiter` asks for the lock while another transaction holds its row for
/// longer than the lease: once the row is free it takes the lock (the
/// lease is counted by the database's clock after the wait, so it has not
/// ended before it was taken), and the store keeps it at least as long as
/// the guard believes.
async fn a_lone_waiter_for_a_held_row_takes_a_live_lease<P: LockProvider + LockAdmin>(
    waiter: &P,
    release_row: impl Future<Output = ()>,
) {
    let config = short_config();
    let (taken, ()) = tokio::join!(waiter.try_lock(&config), async {
        tokio::time::sleep(ROW_HELD_FOR).await;
        release_row.await;
    });
    let guard = taken
        .unwrap_or_else(|err| panic!("the acquisition failed: {err}"))
        .unwrap_or_else(|| panic!("the lock was free once the row was, but was not taken"));
    let asked = Instant::now();
    let state = waiter
        .lock_state(NAME)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let stored = state
        .holders
        .first()
        .and_then(|holder| holder.lease_left)
        .unwrap_or_else(|| panic!("the store shows no live lease: {state:?}"));
    let believed = guard.lease_until().saturating_duration_since(asked);
    // The store reports whole milliseconds.
    assert!(
        stored + Duration::from_millis(1) >= believed,
        "the store keeps the lease {stored:?}, the guard believes {believed:?}"
    );
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
}

async fn tokens_of(guards: &[LockGuard]) -> Vec<Option<u64>> {
    let mut tokens = Vec::new();
    for guard in guards {
        tokens.push(guard.fencing_token().await.ok());
    }
    tokens
}

/// The row-wait tests on the server store `$store`: the row is held by a
/// `SELECT .. FOR UPDATE` in a transaction of a plain connection.
macro_rules! row_wait_test {
    ($test:ident, $lone:ident, $store:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $lone() {
            let table = unique_table_name("rowwait");
            let (waiter, other) = (support::$store(&table).await, support::$store(&table).await);
            let transaction = hold_the_row(&other, other.pool(), &table).await;
            a_lone_waiter_for_a_held_row_takes_a_live_lease(&waiter, async {
                transaction
                    .commit()
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
            })
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let table = unique_table_name("rowwait");
            let (first, second) = (support::$store(&table).await, support::$store(&table).await);
            let transaction = hold_the_row(&second, second.pool(), &table).await;
            two_waiters_for_a_held_row_never_both_win(&first, &second, async {
                transaction
                    .commit()
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
            })
            .await;
        }
    };
}

row_wait_test!(
    postgres_two_waiters_for_a_held_row_never_both_win,
    postgres_a_lone_waiter_for_a_held_row_takes_a_live_lease,
    postgres
);
row_wait_test!(
    mysql_two_waiters_for_a_held_row_never_both_win,
    mysql_a_lone_waiter_for_a_held_row_takes_a_live_lease,
    mysql
);

/// SQLite's version: another connection holds the file's write lock
/// (`BEGIN IMMEDIATE`) while the two acquisitions wait in its busy handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_waiters_for_the_write_lock_never_both_win() {
    let name = unique_table_name("rowwait");
    let (first, second) = (support::sqlite(&name).await, support::sqlite(&name).await);
    let config = config();
    let guard = acquire(&second, &config).await;
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    let url = format!("sqlite://{}", support::sqlite_file(&name).display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    blocker
        .execute("BEGIN IMMEDIATE")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    two_waiters_for_a_held_row_never_both_win(&first, &second, async {
        blocker
            .execute("COMMIT")
            .await
            .unwrap_or_else(|err| panic!("{err}"));
    })
    .await;
}
