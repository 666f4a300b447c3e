//! Hand-off latency: from the holder's release to the first line of the job
//! that was waiting for the lock (`wait_for`), p50 and p99.
//!
//! `cargo bench --bench handoff` (a private redis-server is started; set
//! `SHEDLOCK_TEST_REDIS_URL` to use another). `HANDOFFS=N` sets the count.
//! Measured for Redis woken by the release notification (pub/sub), Redis with
//! notifications switched off (the polling fallback), and the in-memory provider.

use std::time::{Duration, Instant};

use shedlock::redis::RedisLockProvider;
use shedlock::{
    BoxFuture, InMemoryLockProvider, LockConfiguration, LockError, LockGuard, LockProvider,
    LockingTaskExecutor,
};
use shedlock_redis::testkit::RedisServer;

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
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<34} hand-offs {:>4}   p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
        latencies.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let handoffs = std::env::var("HANDOFFS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let server = RedisServer::start();
    let connect = || RedisLockProvider::connect(server.url());
    measure(
        "redis, release notification",
        connect().await?,
        connect().await?,
        handoffs,
    )
    .await?;
    let (holder, waiter) = (connect().await?, connect().await?);
    measure(
        "redis, polling fallback",
        std::sync::Arc::new(PollingOnly(holder)),
        std::sync::Arc::new(PollingOnly(waiter)),
        handoffs.min(100),
    )
    .await?;
    let memory = InMemoryLockProvider::new();
    measure("in-memory", memory.clone(), memory, handoffs).await?;
    Ok(())
}
