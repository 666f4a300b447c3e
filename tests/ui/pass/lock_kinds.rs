//! Shared, counted and paused-by-default locks compile and run.

use std::time::Duration;

use shedlock::InMemoryLockProvider;
use shedlock::admin::LockAdmin;

static PROVIDER: std::sync::LazyLock<InMemoryLockProvider> =
    std::sync::LazyLock::new(InMemoryLockProvider::new);

#[shedlock::scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "shared", provider = &*PROVIDER)]
async fn read_catalog() -> u32 {
    1
}

#[shedlock::scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "exclusive", provider = &*PROVIDER)]
async fn rebuild_catalog() -> u32 {
    2
}

#[shedlock::scheduler_lock(name = "exports", lock_at_most_for = "1m", permits = 3, capacity = 9, provider = &*PROVIDER)]
async fn export() -> u32 {
    3
}

#[shedlock::scheduler_lock(name = "maintenance", lock_at_most_for = "1m", capacity = 0, provider = &*PROVIDER)]
async fn starts_paused() {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(read_catalog().await.ok().flatten(), Some(1));
    assert_eq!(rebuild_catalog().await.ok().flatten(), Some(2));
    assert_eq!(export().await.ok().flatten(), Some(3));
    assert_eq!(starts_paused().await.ok(), Some(None));
    let _ = PROVIDER.set_capacity("maintenance", 1).await;
    assert_eq!(starts_paused().await.ok(), Some(Some(())));
    let _ = Duration::ZERO;
}
