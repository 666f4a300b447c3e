//! Hand-off latency: from the holder's release to the first line of the job
//! that was waiting for the lock (`wait_for`), p50 and p99.
//!
//! `cargo bench --bench handoff` (a private redis-server is started; set
//! `SHEDLOCK_TEST_REDIS_URL` to use another). `HANDOFFS=N` sets the count;
//! `STORES=postgres,mysql,sqlite` (any of `redis`, `memory`, `postgres`,
//! `mysql`, `sqlite`) picks the stores, all by default.
//! Measured for Redis woken by the release notification (pub/sub), Redis with
//! notifications switched off (the polling fallback), the in-memory provider,
//! and the SQL providers (the test servers of `shedlock-sql`'s tests:
//! `SHEDLOCK_TEST_POSTGRES_URL`, `SHEDLOCK_TEST_MYSQL_URL`): holder and waiter
//! are two providers with pools of their own, woken either by the in-process
//! release notification (same process) or by polling alone (as a waiter in
//! another process is).

use std::time::{Duration, Instant};

use shedlock::provider::BoxFuture;
use shedlock::redis::RedisLockProvider;
use shedlock::sql::{MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};
use shedlock::{
    InMemoryLockProvider, LeaderElection, LockConfiguration, LockError, LockGuard, LockProvider,
    LockingTaskExecutor,
};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{mysql_url, postgres_url, unique_table_name};

/// A provider whose waiters get no release notification, so they poll.
struct PollingOnly<P>(P);

impl<P: LockProvider> LockProvider for PollingOnly<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        self.0.try_lock(config)
    }
}

async fn measure<P: LockProvider + Clone>(
    label: &str,
    holder: P,
    waiter: P,
    handoffs: usize,
) -> Result<(), LockError> {
    let config = LockConfiguration::new(
        format!("handoff-{label}"),
        Duration::from_secs(30),
        Duration::ZERO,
    )?;
    let waiter = LockingTaskExecutor::new(waiter);
    let mut latencies = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        let Some(guard) = holder.try_lock(&config).await? else {
            return Err(LockError::InvalidConfiguration(
                "lock unexpectedly held".into(),
            ));
        };
        let (waiter, config) = (waiter.clone(), config.clone());
        let waiting = tokio::spawn(async move {
            waiter
                .execute_waiting(&config, Duration::from_secs(10), async { Instant::now() })
                .await
        });
        // Let the waiter make its first attempt and start waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let released_at = Instant::now();
        guard.unlock().await?;
        match waiting.await {
            Ok(Ok(Some(first_line))) => latencies.push(first_line - released_at),
            other => {
                return Err(LockError::InvalidConfiguration(format!(
                    "the waiter did not run: {other:?}"
                )));
            }
        }
    }
    report(label, &mut latencies);
    Ok(())
}

/// Prints p50, p99 and the maximum of `latencies`.
fn report(label: &str, latencies: &mut [Duration]) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<44} hand-offs {:>4}   p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
        latencies.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

/// Holder and waiter on one SQL table, each with a pool of its own: woken
/// by the in-process notification, then by polling alone.
/// Leader hand-over: from the leader's closure returning (it steps down) to
/// the first line of the next leader's closure, with a candidate campaigning
/// (lease 15 s, retry period 2 s: a hand-over faster than 2 s came from the
/// release, not from the retry).
async fn measure_leader<P: LockProvider + Clone>(
    label: &str,
    leader: P,
    candidate: P,
    handoffs: usize,
) -> Result<(), LockError> {
    let name = format!("leader-handoff-{label}");
    let lease = Duration::from_secs(15);
    let first = std::sync::Arc::new(LeaderElection::new(leader, name.clone(), lease)?);
    let next = std::sync::Arc::new(LeaderElection::new(candidate, name, lease)?);
    let mut latencies = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        let (stepped_tx, stepped_rx) = tokio::sync::oneshot::channel::<()>();
        let leading = first.clone();
        let leader = tokio::spawn(async move {
            leading
                .run(|_| async move {
                    let _ = stepped_rx.await;
                    Instant::now()
                })
                .await
        });
        // The first leads before the candidate starts campaigning.
        while !first.is_leader() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let campaigning = next.clone();
        let candidate =
            tokio::spawn(async move { campaigning.run(|_| async { Instant::now() }).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _ = stepped_tx.send(());
        let stepped_down = leader
            .await
            .map_err(|err| LockError::InvalidConfiguration(err.to_string()))??;
        let took_over = candidate
            .await
            .map_err(|err| LockError::InvalidConfiguration(err.to_string()))??;
        latencies.push(took_over.saturating_duration_since(stepped_down));
    }
    report(&format!("leader hand-over, {label}"), &mut latencies);
    Ok(())
}

async fn measure_sql<P: LockProvider + Clone>(
    label: &str,
    holder: P,
    waiter: P,
    handoffs: usize,
) -> Result<(), LockError> {
    measure(
        &format!("{label}, same process"),
        holder.clone(),
        waiter.clone(),
        handoffs,
    )
    .await?;
    measure(
        &format!("{label}, polling (other process)"),
        std::sync::Arc::new(PollingOnly(holder)),
        std::sync::Arc::new(PollingOnly(waiter)),
        handoffs.min(100),
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let handoffs = std::env::var("HANDOFFS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let stores =
        std::env::var("STORES").unwrap_or_else(|_| "redis,memory,postgres,mysql,sqlite".into());
    let wanted = |store: &str| stores.split(',').any(|s| s.trim() == store);
    if wanted("redis") {
        redis(handoffs).await?;
    }
    if wanted("memory") {
        let memory = InMemoryLockProvider::new();
        measure("in-memory", memory.clone(), memory.clone(), handoffs).await?;
        measure_leader("in-memory", memory.clone(), memory, handoffs).await?;
    }
    let table = unique_table_name("handoff");
    if wanted("postgres") {
        let connect = || async {
            PostgresLockProvider::connect(&postgres_url())
                .await?
                .with_table_name(&table)
        };
        let (holder, waiter) = (connect().await?, connect().await?);
        holder.create_table_if_missing().await?;
        measure_sql("postgres", holder, waiter, handoffs).await?;
    }
    if wanted("mysql") {
        let connect = || async {
            MySqlLockProvider::connect(&mysql_url())
                .await?
                .with_table_name(&table)
        };
        let (holder, waiter) = (connect().await?, connect().await?);
        holder.create_table_if_missing().await?;
        measure_sql("mariadb", holder, waiter, handoffs).await?;
    }
    if wanted("sqlite") {
        let file =
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{table}.db"));
        let (holder, waiter) = (
            SqliteLockProvider::open(&file).await?,
            SqliteLockProvider::open(&file).await?,
        );
        holder.create_table_if_missing().await?;
        measure_sql("sqlite (WAL file)", holder, waiter, handoffs).await?;
    }
    Ok(())
}

async fn redis(handoffs: usize) -> Result<(), LockError> {
    let server = RedisServer::start();
    let connect = || RedisLockProvider::connect(server.url());
    measure(
        "redis, release notification",
        connect().await?,
        connect().await?,
        handoffs,
    )
    .await?;
    measure_leader("redis", connect().await?, connect().await?, handoffs).await?;
    let (holder, waiter) = (connect().await?, connect().await?);
    measure(
        "redis, polling fallback",
        std::sync::Arc::new(PollingOnly(holder)),
        std::sync::Arc::new(PollingOnly(waiter)),
        handoffs.min(100),
    )
    .await
}
