//! `SchedulerLock::shutdown()` gives back every scope this process still
//! holds in the store, including one whose ownership a tick found past its
//! deadline (renewals failing) and replaced while a run of it went on: its
//! keeper gives the lease back once the run ends, and shutdown waits for it.
//! Its own test binary: shutdown closes the process-wide scope registry.

use std::time::{Duration, Instant};

use shedlock::admin::LockAdmin;
use shedlock::{InMemoryLockProvider, SchedulerLock, scheduler_lock};
use shedlock_test_support::faults::FaultyProvider;
use shedlock_test_support::scopes::install_default_for_scopes;

/// Scope leases of 3 s: the owner may act 2 s after each request.
const LEASE: Duration = Duration::from_secs(3);

#[scheduler_lock(name = "long-run", scope = "retiring", provider = replica)]
async fn long_run(replica: &FaultyProvider<InMemoryLockProvider>) {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[scheduler_lock(name = "next-tick", scope = "retiring", provider = replica)]
async fn next_tick(replica: &FaultyProvider<InMemoryLockProvider>) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_replaced_ownership_to_give_its_lease_back() -> anyhow::Result<()> {
    install_default_for_scopes(LEASE, Duration::from_millis(100));
    let store = InMemoryLockProvider::new();
    let replica = FaultyProvider::new(store.clone().with_locked_by("owner"));
    replica.faults().fail_renewals(true);
    let started = Instant::now();
    let run = tokio::spawn({
        let replica = replica.clone();
        async move { long_run(&replica).await }
    });
    // Past the owner's deadline (2 s), while the run goes on: this tick
    // replaces the ownership in the registry and stops its keeper.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        next_tick(&replica).await?,
        None,
        "ran on a lapsed ownership"
    );
    SchedulerLock::shutdown().await;
    let returned_after = started.elapsed();
    let state = store.lock_state("scope:retiring").await?;
    assert!(
        state.holders.is_empty(),
        "the scope is still held {returned_after:?} after the start, when shutdown returned \
         (its lease would end at {LEASE:?}): {state:?}"
    );
    assert_eq!(run.await?.map_err(anyhow::Error::from)?, Some(()));
    Ok(())
}
