//! Shared, exclusive, counted and paused locks, with three simulated
//! replicas in one process (no server): readers run together, the writer
//! runs alone, counted exports never exceed their capacity, and a paused
//! lock runs nothing until it is resumed.
//!
//! ```text
//! cargo run --example lock_kinds
//! ```
//!
//! With Redis or a database the code is the same; only the provider changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shedlock::admin::LockAdmin;
use shedlock::{InMemoryLockProvider, scheduler_lock};
use tracing_subscriber::EnvFilter;

/// Many replicas read the catalog at once...
#[scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "shared", provider = store)]
async fn read_catalog(store: &InMemoryLockProvider, replica: usize, inside: &AtomicUsize) -> usize {
    let together = inside.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    inside.fetch_sub(1, Ordering::SeqCst);
    tracing::info!(replica, together, "read the catalog");
    together
}

/// ...one rebuilds it alone, waiting for the readers to finish.
#[scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "exclusive", wait_for = "10s", provider = store)]
async fn rebuild_catalog(store: &InMemoryLockProvider, inside: &AtomicUsize) {
    tracing::info!(
        readers_inside = inside.load(Ordering::SeqCst),
        "rebuilding the catalog alone"
    );
}

/// Each export takes 2 of 4 permits: two run at once, a third skips.
#[scheduler_lock(name = "exports", lock_at_most_for = "1m", permits = 2, capacity = 4, provider = store)]
async fn export(store: &InMemoryLockProvider, replica: usize) {
    tracing::info!(replica, "exporting");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let store = InMemoryLockProvider::new();

    // Shared holders together, and the exclusive one after them.
    let inside = AtomicUsize::new(0);
    let (first, second, third, rebuilt) = tokio::join!(
        read_catalog(&store, 0, &inside),
        read_catalog(&store, 1, &inside),
        read_catalog(&store, 2, &inside),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            rebuild_catalog(&store, &inside).await
        }
    );
    let most = [first?, second?, third?].into_iter().flatten().max();
    tracing::info!(
        ?most,
        rebuilt = rebuilt?.is_some(),
        "readers ran together, the writer alone"
    );

    // Counted: 2 permits each of a capacity of 4, three replicas at once.
    let ran = tokio::join!(export(&store, 0), export(&store, 1), export(&store, 2));
    let exported = [ran.0?, ran.1?, ran.2?].iter().flatten().count();
    tracing::info!(exported, skipped = 3 - exported, "counted exports");

    // Paused (capacity 0, as `shedlock pause exports` does), then resumed.
    store.pause("exports").await?;
    let paused = export(&store, 0).await?;
    tracing::info!(ran = paused.is_some(), "while paused");
    store.resume("exports").await?;
    let resumed = export(&store, 0).await?;
    tracing::info!(ran = resumed.is_some(), "after resume");
    Ok(())
}
