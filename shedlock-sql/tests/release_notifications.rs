//! On PostgreSQL, a waiter in another process wakes on the release (the
//! release statement's `pg_notify`, heard on the provider's `LISTEN`
//! connection), well before its next poll, and still does after that
//! connection was killed.
//!
//! The holder is this test binary again, running only `holder_process`, so
//! its release reaches the waiter through the database alone (a release in
//! the same process would wake it directly). The waiter's attempts are
//! recorded, and the release is sent 100 ms after an attempt once the
//! waiter polls every 500 ms: polling alone would wake it 400 ms later.

mod support;

use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_sql::PostgresLockProvider;
use shedlock_sql::sqlx::{self, PgPool};
use shedlock_test_support::Worker;
use shedlock_test_support::attempts::AttemptsRecorded;
use shedlock_test_support::sql::{postgres_url, unique_table_name};

const HOLDER_TABLE_ENV: &str = "SHEDLOCK_SQL_NOTIFY_TABLE";
const LOCK: &str = "notified-handoff";
/// Far longer than the test: the waiter's lease-end hint never wakes it.
const LEASE: Duration = Duration::from_secs(60);
/// The waiter's longest pause between polls (the executor's).
const MAX_POLL: Duration = Duration::from_millis(500);
const RELEASE_AFTER_ATTEMPT: Duration = Duration::from_millis(100);
/// Woken by the notification: a round trip or two. By its next poll: 400 ms.
const WOKEN_WITHIN: Duration = Duration::from_millis(100);

#[tokio::test]
async fn a_waiter_in_another_process_wakes_on_the_release_not_at_its_next_poll() {
    let handoff = Handoff::start().await;
    let waiting = handoff.wait();
    handoff.wait_until_polling_slowly().await;
    handoff.release_and_check_woken(waiting).await;
}

#[tokio::test]
async fn a_killed_listening_connection_is_replaced_and_waiters_still_wake() {
    let handoff = Handoff::start().await;
    let waiting = handoff.wait();
    handoff.attempts.wait_for_attempts(1).await;
    let killed = handoff.listener_pid().await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(killed)
        .fetch_one(&handoff.pool)
        .await
        .unwrap_or_else(|err| panic!("pg_terminate_backend: {err}"));
    assert!(
        terminated,
        "the listening connection {killed} was not terminated"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let renewed = loop {
        let pid = handoff.listener_pid_if_any().await;
        if let Some(pid) = pid.filter(|&pid| pid != killed) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no new listening connection within 5 s of killing {killed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("listening connection {killed} killed, replaced by {renewed}");
    handoff.wait_until_polling_slowly().await;
    handoff.release_and_check_woken(waiting).await;
}

/// A holder process with the lock, and a waiter here that records its attempts.
struct Handoff {
    holder: Worker,
    waiter: LockingTaskExecutor<AttemptsRecorded<PostgresLockProvider>>,
    attempts: AttemptsRecorded<PostgresLockProvider>,
    pool: PgPool,
    table: String,
}

impl Handoff {
    async fn start() -> Handoff {
        let table = unique_table_name("notify");
        let provider = support::postgres(&table).await;
        let pool = provider.pool().clone();
        let mut holder = Worker::spawn("holder_process", &[(HOLDER_TABLE_ENV, &table)]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let held = format!(
            "SELECT count(*) FROM {table} WHERE name = $1 AND lock_until > now() AT TIME ZONE 'UTC'"
        );
        loop {
            let count: i64 = sqlx::query_scalar(&held)
                .bind(LOCK)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|err| panic!("reading the lock's row: {err}"));
            if count == 1 {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "the holder process did not take the lock within 20 s:\n{}",
                    holder.kill_and_output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attempts = AttemptsRecorded::new(provider);
        Handoff {
            holder,
            waiter: LockingTaskExecutor::new(attempts.clone()),
            attempts,
            pool,
            table,
        }
    }

    /// Waits for the lock in a task: the instant the waiter's job started.
    fn wait(&self) -> tokio::task::JoinHandle<Instant> {
        let waiter = self.waiter.clone();
        tokio::spawn(async move {
            let config = LockConfiguration::new(LOCK, LEASE, Duration::ZERO)
                .unwrap_or_else(|err| panic!("{err}"));
            waiter
                .execute_waiting(&config, Duration::from_secs(30), async { Instant::now() })
                .await
                .unwrap_or_else(|err| panic!("waiting for the lock: {err}"))
                .unwrap_or_else(|| panic!("the waiter gave up"))
        })
    }

    /// Returns once the waiter's last two attempts came a full poll interval apart.
    async fn wait_until_polling_slowly(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .attempts
            .polls_every(MAX_POLL - Duration::from_millis(50))
        {
            assert!(
                Instant::now() < deadline,
                "the waiter did not reach its longest poll interval"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Has the holder release [`RELEASE_AFTER_ATTEMPT`] after the waiter's
    /// last attempt, and checks the waiter started within [`WOKEN_WITHIN`].
    async fn release_and_check_woken(mut self, waiting: tokio::task::JoinHandle<Instant>) {
        let attempts = self.attempts.attempts();
        let last = self.attempts.last_attempt();
        tokio::time::sleep_until((last + RELEASE_AFTER_ATTEMPT).into()).await;
        assert_eq!(
            self.attempts.attempts(),
            attempts,
            "the waiter attempted again before the release; the timing is off"
        );
        let released_at = Instant::now();
        self.holder.send_line("release");
        let started = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap_or_else(|_| panic!("the waiter did not get the lock within 5 s of the release"))
            .unwrap_or_else(|err| panic!("the waiting task failed: {err}"));
        let woken_after = started.saturating_duration_since(released_at);
        let (status, output) = self.holder.finish(Duration::from_secs(10)).await;
        assert!(
            status.is_some_and(|status| status.success()),
            "the holder failed:\n{output}"
        );
        println!(
            "the waiter started {woken_after:?} after the release was asked for (next poll due {:?} after)",
            (last + MAX_POLL).saturating_duration_since(released_at)
        );
        assert!(
            woken_after < WOKEN_WITHIN,
            "the waiter started {woken_after:?} after the release: woken by its poll, not by \
             the notification"
        );
    }

    /// The backend pid of the connection listening for this table's releases.
    async fn listener_pid(&self) -> i32 {
        self.listener_pid_if_any()
            .await
            .unwrap_or_else(|| panic!("no connection listens for releases of {}", self.table))
    }

    async fn listener_pid_if_any(&self) -> Option<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%'",
        )
        .bind(&self.table)
        .fetch_optional(&self.pool)
        .await
        .unwrap_or_else(|err| panic!("reading pg_stat_activity: {err}"))
    }
}

/// The holder: takes the lock, then releases it when the test sends a line.
/// Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "the holder process of the tests above"]
async fn holder_process() -> anyhow::Result<()> {
    let Ok(table) = std::env::var(HOLDER_TABLE_ENV) else {
        return Ok(());
    };
    let provider = PostgresLockProvider::connect(&postgres_url())
        .await?
        .with_table_name(&table)?;
    let config = LockConfiguration::new(LOCK, LEASE, Duration::ZERO)?;
    let guard = provider
        .try_lock(&config)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the lock was held already"))?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    anyhow::ensure!(line.trim() == "release", "unexpected command {line:?}");
    guard.unlock().await?;
    println!("released");
    Ok(())
}
