//! What SQL servers do every week: close idle sessions, and restart between ticks.
//!
//! Each test starts a private server (`shedlock_test_support::sql`) that it
//! may stop and start again, so the shared test servers are never disturbed.
//! A tick is one `LockingTaskExecutor::execute` of a job with
//! `lock_at_most_for = 30 s`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockError, LockGuard, LockProvider, LockingTaskExecutor};
use shedlock_sql::sqlx::{self, Connection};
use shedlock_sql::{DEFAULT_TABLE_NAME, SqlLockProvider, SqlServer};
use shedlock_test_support::sql::{
    MariaDb, MariaDbServer, Postgres, PostgresServer, PrivateServer, ServerDatabase, TestTable,
};

/// Ticks after an idle period.
const TICKS: usize = 3;
/// Longer than the servers' limit on idle sessions in these tests (1 s).
const IDLE: Duration = Duration::from_millis(1600);
/// A tick while the server is down must fail within this: no hang.
const FAILS_WITHIN: Duration = Duration::from_secs(3);
/// A tick after the restart must run within this.
const RUNS_WITHIN: Duration = Duration::from_secs(2);
/// How long the server stays down while a tick waits for it: a short
/// restart, within the 2 s a lock operation waits for a connection.
const RESTART_AFTER: Duration = Duration::from_millis(100);

/// A private server's database, with what these tests need of it.
trait PrivateDatabase: ServerDatabase + Send + 'static {
    /// Its name in messages.
    const LABEL: &'static str;
    /// A plain sqlx connection to it.
    type Connection: Connection;
    /// The lock provider's database.
    type Sql: SqlServer;
}

impl PrivateDatabase for Postgres {
    const LABEL: &'static str = "postgres";
    type Connection = sqlx::PgConnection;
    type Sql = shedlock_sql::Postgres;
}

impl PrivateDatabase for MariaDb {
    const LABEL: &'static str = "mariadb";
    type Connection = sqlx::MySqlConnection;
    type Sql = shedlock_sql::MySql;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ticks_after_idle_session_timeout_all_run() {
    let server = PostgresServer::start(&["idle_session_timeout=1s"]);
    every_tick_after_an_idle_period_runs(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_ticks_after_wait_timeout_all_run() {
    let server = MariaDbServer::start(&["--wait-timeout=1"]);
    every_tick_after_an_idle_period_runs(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_between_ticks_fails_fast_while_down_and_recovers() {
    ticks_fail_fast_while_down_and_run_once_back(PostgresServer::start(&[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restart_between_ticks_fails_fast_while_down_and_recovers() {
    ticks_fail_fast_while_down_and_run_once_back(MariaDbServer::start(&[])).await;
}

/// Ticks separated by idle periods longer than the server's limit on idle
/// sessions: every one takes the lock, runs its job and releases the lock;
/// a job holding its lock across the idle periods releases it after them.
async fn every_tick_after_an_idle_period_runs<D: PrivateDatabase>(server: &PrivateServer<D>)
where
    SqlLockProvider<D::Sql>: TestTable,
{
    let (label, url) = (D::LABEL, server.url());
    let executor = LockingTaskExecutor::new(on_private_server::<D>(&url).await);
    assert_tick_runs(&executor, "the first tick").await;
    let long_job = take(executor.provider(), &long_job_config(), "the long job").await;
    // A session of our own, left idle as long as the provider's: it shows
    // the server really closes idle sessions.
    let mut idle_session = D::Connection::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the private server: {err}"));
    for tick in 1..=TICKS {
        tokio::time::sleep(IDLE).await;
        let started = Instant::now();
        // Each tick also shows the previous one released the lock.
        assert_tick_runs(&executor, &format!("tick {tick} after {IDLE:?} idle")).await;
        eprintln!(
            "{label}: tick {tick} after {IDLE:?} idle ran in {:?}",
            started.elapsed()
        );
    }
    assert_long_job_releases(executor.provider(), long_job).await;
    assert!(
        idle_session.ping().await.is_err(),
        "the server did not close an idle session, so this test showed nothing"
    );
}

/// A server stopped between ticks: ticks while it is down fail quickly with
/// a store error naming it (their jobs never run); a tick that starts while
/// it is down and waits while it comes back runs; so do the ticks after,
/// with the same provider; a job holding its lock across the restart
/// releases it after.
async fn ticks_fail_fast_while_down_and_run_once_back<D: PrivateDatabase>(
    mut server: PrivateServer<D>,
) where
    SqlLockProvider<D::Sql>: TestTable,
{
    let (label, address) = (D::LABEL, format!("127.0.0.1:{}", server.port()));
    let executor = LockingTaskExecutor::new(on_private_server::<D>(&server.url()).await);
    assert_tick_runs(&executor, "the tick before the restart").await;
    let long_job = take(executor.provider(), &long_job_config(), "the long job").await;
    let stopping = Instant::now();
    server.stop();
    eprintln!("{label}: server stopped in {:?}", stopping.elapsed());
    for tick in 1..=2 {
        let ran = Arc::new(AtomicBool::new(false));
        let job = {
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        };
        let started = Instant::now();
        let result =
            tokio::time::timeout(FAILS_WITHIN * 3, executor.execute(lock_config(), job)).await;
        let took = started.elapsed();
        let err = match result {
            Ok(Err(err)) => err,
            Ok(Ok(outcome)) => panic!("tick {tick} while the server is down: {outcome:?}"),
            Err(_) => panic!("tick {tick} while the server is down hung for {took:?}"),
        };
        eprintln!("{label}: tick {tick} while down failed in {took:?}: {err}");
        assert!(
            matches!(err, LockError::Store { .. }),
            "nothing was sent, so the failure is certain: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&address) && message.contains("connection"),
            "the error should name the server and the connection failure: {message}"
        );
        assert!(
            took < FAILS_WITHIN,
            "tick {tick} while down took {took:?}: {err}"
        );
        assert!(!ran.load(Ordering::SeqCst), "a job ran without its lock");
    }

    let restarting = tokio::task::spawn_blocking(move || {
        std::thread::sleep(RESTART_AFTER);
        let starting = Instant::now();
        server.start_again();
        eprintln!("{label}: server started again in {:?}", starting.elapsed());
        (server, Instant::now())
    });
    let started = Instant::now();
    assert_tick_runs(&executor, "a tick started while the server was down").await;
    let done = Instant::now();
    let (server, back) = restarting
        .await
        .unwrap_or_else(|err| panic!("restarting the server failed: {err}"));
    eprintln!(
        "{label}: a tick started while the server was down ran {:?} after the server accepted \
         connections ({:?} after it started)",
        done.saturating_duration_since(back),
        done - started
    );
    let started = Instant::now();
    assert_tick_runs(&executor, "the first tick after the restart").await;
    let took = started.elapsed();
    eprintln!("{label}: the first tick after the restart ran in {took:?}");
    assert!(
        took < RUNS_WITHIN,
        "the first tick after the restart took {took:?}"
    );
    assert_long_job_releases(executor.provider(), long_job).await;
    drop(server);
}

/// Takes the lock `config` describes, which must be free.
async fn take<P: LockProvider>(provider: &P, config: &LockConfiguration, what: &str) -> LockGuard {
    match provider.try_lock(config).await {
        Ok(Some(guard)) => guard,
        other => panic!("{what} should take its lock: {other:?}"),
    }
}

/// The long job's guard unlocks, and its lock is free at once
/// (`lock_at_least_for` is 0).
async fn assert_long_job_releases<P: LockProvider>(provider: &P, guard: LockGuard) {
    if let Err(err) = guard.unlock().await {
        panic!("the long job should unlock: {err}");
    }
    let again = take(provider, &long_job_config(), "the long job, again").await;
    if let Err(err) = again.unlock().await {
        panic!("the long job should unlock again: {err}");
    }
}

async fn assert_tick_runs<P: LockProvider>(executor: &LockingTaskExecutor<P>, tick: &str) {
    match executor.execute(lock_config(), async {}).await {
        Ok(Some(())) => {}
        other => panic!("{tick} should take the lock and run: {other:?}"),
    }
}

fn long_job_config() -> LockConfiguration {
    LockConfiguration::new(
        "production-long-job",
        Duration::from_secs(30),
        Duration::ZERO,
    )
    .unwrap_or_else(|err| panic!("{err}"))
}

fn lock_config() -> LockConfiguration {
    LockConfiguration::new("production-tick", Duration::from_secs(30), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// A provider connected to the private server of `D` at `url`, on
/// ShedLock's table.
async fn on_private_server<D: PrivateDatabase>(url: &str) -> SqlLockProvider<D::Sql>
where
    SqlLockProvider<D::Sql>: TestTable,
{
    SqlLockProvider::<D::Sql>::connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the private {} server: {err}", D::LABEL))
        .on_table(DEFAULT_TABLE_NAME)
        .await
}
