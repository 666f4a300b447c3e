//! A lock operation cancelled while its transaction's `BEGIN` is on the way
//! (a caller's timeout, a `select!`, a graceful shutdown stopping a scope's
//! renewal) must not hand its connection back inside that transaction: the
//! next operation on it would look done (a release answering "released")
//! but never be committed, and its row locks would keep other replicas
//! waiting until the session ends. Found by the scopes' shutdown test:
//! scopes given up at shutdown were still held afterwards.
//!
//! The answers of the server are delayed by a proxy, and the operation is
//! cancelled between sending `BEGIN` and its answer; the pool has one
//! connection, so the next operation gets the same one (or, fixed, a new one).

use std::time::Duration;

use shedlock_core::{LockAdmin, LockConfiguration, LockProvider};
use shedlock_sql::sqlx::{Database, Pool, pool::PoolOptions};
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider};
use shedlock_test_support::proxy::{Direction, FaultProxy};
use shedlock_test_support::sql::unique_table_name;
use shedlock_test_support::sql::{TestTable, mysql, mysql_url, postgres, postgres_url};

/// How late the server's answers come while the operation is cancelled.
const LATE: Duration = Duration::from_millis(800);

/// Takes a lock through a one-connection pool behind a proxy, cancels an
/// extension of it while the `BEGIN` of the extension's transaction is
/// unanswered, releases the lock, and checks through another pool that it
/// is free: the release was committed. `before_begin`: the round trips of
/// the extension before its `BEGIN` (MySQL sets the isolation level first).
async fn a_release_after_a_cancelled_begin_is_committed<P, A, DB>(
    url: &str,
    before_begin: u32,
    make: impl Fn(Pool<DB>) -> P,
    admin: A,
    table: &str,
) where
    P: LockProvider + TestTable,
    A: LockAdmin + LockProvider,
    DB: Database,
{
    let proxy = FaultProxy::start_in_front_of(url).await;
    // One connection, not pinged before use: the extension's first message
    // is its BEGIN.
    let pool = PoolOptions::<DB>::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&proxy.route(url))
        .await
        .unwrap_or_else(|err| panic!("cannot connect through the proxy: {err}"));
    let provider = make(pool).table_named(table);
    let config = LockConfiguration::new("cancelled-begin", Duration::from_secs(60), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"));
    let mut guard = provider
        .try_lock(&config)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .unwrap_or_else(|| panic!("the lock was free"));

    // The connection back in the pool (checked with a ping on its return).
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set_latency(Direction::ToClient, LATE);
    // Cancelled halfway between its BEGIN going out and the answer.
    let extension = tokio::time::timeout(
        LATE * before_begin + LATE / 2,
        guard.extend(Duration::from_secs(120), Duration::ZERO),
    )
    .await;
    assert!(
        extension.is_err(),
        "the extension was answered: {extension:?}"
    );
    proxy.set_latency(Direction::ToClient, Duration::ZERO);
    // The late answers arrive, and the connection goes back to the pool.
    tokio::time::sleep(LATE * 2).await;

    guard
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("the release failed: {err}"));
    let state = admin
        .lock_state("cancelled-begin")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        state.holders.is_empty(),
        "released, yet still held: the release ran inside the cancelled operation's \
         transaction and was never committed: {state:?}"
    );
    // And another replica takes it at once (no row lock left behind).
    let next = tokio::time::timeout(Duration::from_secs(5), admin.try_lock(&config))
        .await
        .unwrap_or_else(|_| panic!("the next acquisition waited for a row lock left behind"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(next.is_some(), "the lock is not free after its release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_a_cancelled_begin_is_committed_on_postgres_and_mariadb() {
    let table = unique_table_name("cancelled");
    let (postgres_admin, mysql_admin) = (postgres(&table).await, mysql(&table).await);
    let postgres_url = postgres_url();
    a_release_after_a_cancelled_begin_is_committed(
        &postgres_url,
        0,
        PostgresLockProvider::new,
        postgres_admin,
        &table,
    )
    .await;
    let mysql_url = mysql_url();
    a_release_after_a_cancelled_begin_is_committed(
        &mysql_url,
        1,
        MySqlLockProvider::new,
        mysql_admin,
        &table,
    )
    .await;
}
