//! The first thing to run: three simulated replicas share one job, and each
//! tick only one of them runs it. No server needed.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The replicas are tasks of this process sharing an `InMemoryLockProvider`;
//! real replicas share a Redis or a database the same way (see the `redis`
//! and `cron_cluster` examples).

use std::fmt;
use std::time::Duration;

use shedlock::{InMemoryLockProvider, scheduler_lock};
use tokio::time::{Instant, interval_at, sleep};
use tracing_subscriber::EnvFilter;

const REPLICAS: usize = 3;
const TICKS: u32 = 4;
const TICK_PERIOD: Duration = Duration::from_millis(700);

/// The job every replica schedules. Only the replica that takes the lock runs
/// the body; the others get `Ok(None)` at once.
///
/// `lock_at_least_for` keeps the lock for 500 ms even though the job takes
/// 50 ms, so a replica whose scheduler fires after the job has ended (the one
/// at +80ms below) still skips this tick instead of running it a second time.
#[scheduler_lock(
    name = "nightly-report",
    lock_at_most_for = "10s",
    lock_at_least_for = "500ms",
    provider = locks
)]
async fn nightly_report(locks: &InMemoryLockProvider, replica: usize, tick: Tick) {
    // Inside the body, the lock this task holds. Its fencing token grows with
    // every acquisition: hand it to a store that should refuse stale writers.
    let token = match shedlock::current_lock() {
        Some(lock) => lock.fencing_token().await.unwrap_or_default(),
        None => 0,
    };
    println!("  {tick}: replica {replica} runs it (fencing token {token})");
    sleep(Duration::from_millis(50)).await; // the actual work
}

/// One lock per region: `{region}` takes the argument, so `report-eu` and
/// `report-us` are independent locks.
#[scheduler_lock(name = "report-{region}", lock_at_most_for = "10s", provider = locks)]
async fn regional_report(locks: &InMemoryLockProvider, region: &str) -> String {
    let lock = shedlock::current_lock().map(|lock| lock.name().to_owned());
    sleep(Duration::from_millis(100)).await;
    lock.unwrap_or_default()
}

/// A tick of a replica's schedule, shown as `tick 2 +40ms` (time since it was due).
#[derive(Clone, Copy)]
struct Tick {
    number: u32,
    started: Instant,
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let late = format!("+{}ms", self.started.elapsed().as_millis());
        write!(f, "tick {} {late:>6}", self.number)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    println!(
        "{REPLICAS} replicas schedule 'nightly-report' (a 50 ms job, lock_at_least_for 500 ms):"
    );
    let locks = InMemoryLockProvider::new();
    let start = Instant::now();

    let mut replicas = Vec::new();
    for replica in 1..=REPLICAS {
        // Each replica gets its own handle; clones share the same locks.
        let locks = locks.clone();
        replicas.push(tokio::spawn(async move {
            let mut ticks = interval_at(start, TICK_PERIOD);
            for tick in 1..=TICKS {
                let ticks_started = ticks.tick().await;
                // Schedulers on different machines fire a few ms apart; here
                // the order changes every tick, so different replicas win.
                let position = (replica + tick as usize) % REPLICAS;
                sleep(Duration::from_millis(40 * position as u64)).await;
                let tick = Tick {
                    number: tick,
                    started: ticks_started,
                };
                if nightly_report(&locks, replica, tick).await?.is_none() {
                    println!("  {tick}: replica {replica} skips it (locked elsewhere)");
                }
            }
            Ok::<_, shedlock::LockError>(())
        }));
    }
    for replica in replicas {
        replica.await??;
    }

    println!("\nPer-resource locks, three calls at once:");
    let (eu, us, eu_again) = tokio::join!(
        regional_report(&locks, "eu"),
        regional_report(&locks, "us"),
        regional_report(&locks, "eu"),
    );
    for (region, outcome) in [("eu", eu?), ("us", us?), ("eu", eu_again?)] {
        match outcome {
            Some(lock) => println!("  {region}: ran under lock '{lock}'"),
            None => println!("  {region}: skipped, 'report-{region}' is already running"),
        }
    }
    Ok(())
}
