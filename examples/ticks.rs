//! Ticks: two replicas of a job that runs every second, one of them 400 ms
//! late (its clock or its scheduler behind), on one store (in memory here,
//! so it needs no server). With `every = "1s"` each tick runs once: the late
//! replica finds the tick claimed and skips, though the lock is free. The
//! same job under a plain lock runs every tick twice: the first run had ended
//! before the late replica asked.
//!
//! ```text
//! cargo run --example ticks
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shedlock::{InMemoryLockProvider, scheduler_lock};

/// Claims the tick of a schedule every second nearest to now.
#[scheduler_lock(name = "report-claiming", lock_at_most_for = "10s", every = "1s", provider = locks)]
async fn report_claiming(locks: &InMemoryLockProvider) {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The same job under a plain lock, no tick claimed.
#[scheduler_lock(name = "report-plain", lock_at_most_for = "10s", provider = locks)]
async fn report_plain(locks: &InMemoryLockProvider) {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// One replica's run of the current tick: who ran what.
async fn replica(locks: InMemoryLockProvider, name: &'static str, late: Duration) -> String {
    tokio::time::sleep(late).await;
    let claiming = matches!(report_claiming(&locks).await, Ok(Some(())));
    let plain = matches!(report_plain(&locks).await, Ok(Some(())));
    format!(
        "{name}: with a tick claim {}, with a plain lock {}",
        if claiming { "ran" } else { "skipped" },
        if plain { "ran" } else { "skipped" }
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let locks = InMemoryLockProvider::new();
    for _ in 0..5 {
        // Wait for the next whole second: the tick.
        let since = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let tick = since.as_secs() + 1;
        tokio::time::sleep(Duration::from_secs(tick) - since).await;
        let on_time = tokio::spawn(replica(locks.clone(), "replica A", Duration::ZERO));
        let late = tokio::spawn(replica(
            locks.clone(),
            "replica B",
            Duration::from_millis(400),
        ));
        println!("tick {tick}");
        println!("  {}", on_time.await?);
        println!("  {}", late.await?);
    }
    Ok(())
}
