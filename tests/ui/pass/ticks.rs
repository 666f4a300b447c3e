//! `every`: the call claims the interval's tick nearest to now.

use shedlock::{InMemoryLockProvider, scheduler_lock};

static LOCKS: std::sync::LazyLock<InMemoryLockProvider> =
    std::sync::LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "every-hour", lock_at_most_for = "10m", every = "1h", provider = &*LOCKS)]
async fn hourly() -> u32 {
    1
}

#[scheduler_lock(name = "every-{region}", lock_at_most_for = "1m", every = "15s", misfire = "run_once", provider = &*LOCKS)]
async fn per_region(region: &str) -> usize {
    region.len()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The first call of a tick runs; a second call of the same tick skips.
    assert!(matches!(hourly().await, Ok(Some(1))));
    assert!(matches!(hourly().await, Ok(None)));
    assert!(matches!(per_region("eu").await, Ok(Some(2))));
}
