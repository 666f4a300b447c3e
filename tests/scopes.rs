//! Job scopes (`#[scheduler_lock(scope = "..")]`) with simulated replicas in
//! one process: clones of one in-memory store, each with its own `locked_by`.
//! Every test uses its own scope names; the installed default gives short
//! scope leases and sweeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock::admin::LockAdmin;
use shedlock::{InMemoryLockProvider, LockError, scheduler_lock};
use shedlock_test_support::attempts::AttemptsRecorded;
use shedlock_test_support::scopes::install_default_for_scopes;

const LEASE: Duration = Duration::from_millis(1500);
const SWEEP: Duration = Duration::from_millis(200);

fn install() {
    install_default_for_scopes(LEASE, SWEEP);
}

/// A replica: the shared store seen with its own `locked_by`, counting the
/// round trips its ticks make.
type Replica = AttemptsRecorded<InMemoryLockProvider>;

fn replica(store: &InMemoryLockProvider, name: &str) -> Arc<Replica> {
    Arc::new(AttemptsRecorded::new(store.clone().with_locked_by(name)))
}

/// The installed default ([`install`]), a new store, and `count` replicas
/// of it (`replica-0`, …).
fn replicas_of_a_new_store(count: usize) -> (InMemoryLockProvider, Vec<Arc<Replica>>) {
    install();
    let store = InMemoryLockProvider::new();
    let replicas = (0..count)
        .map(|index| replica(&store, &format!("replica-{index}")))
        .collect();
    (store, replicas)
}

/// Which replica ran each tick, by job.
type Runs = Arc<Mutex<Vec<(String, usize)>>>;

fn record(runs: &Runs, job: &str, replica: usize) {
    if let Ok(mut runs) = runs.lock() {
        runs.push((job.to_owned(), replica));
    }
}

fn taken(runs: &Runs) -> Vec<(String, usize)> {
    runs.lock().map(|runs| runs.clone()).unwrap_or_default()
}

#[scheduler_lock(name = "report-{tenant}", scope = "{tenant}", provider = replica)]
async fn report(replica: &Replica, index: usize, tenant: &str, runs: &Runs) {
    record(runs, &format!("report-{tenant}"), index);
}

#[scheduler_lock(name = "cleanup-{tenant}", scope = "{tenant}", provider = replica)]
async fn cleanup(replica: &Replica, index: usize, tenant: &str, runs: &Runs) {
    record(runs, &format!("cleanup-{tenant}"), index);
}

#[tokio::test]
async fn the_owner_runs_every_tick_and_the_others_skip_without_a_round_trip() -> anyhow::Result<()>
{
    let (store, replicas) = replicas_of_a_new_store(3);
    let runs = Runs::default();
    for _ in 0..10 {
        for (index, replica) in replicas.iter().enumerate() {
            report(replica, index, "sticky-a", &runs).await?;
        }
    }
    let runs = taken(&runs);
    assert_eq!(runs.len(), 10, "one run per tick: {runs:?}");
    assert!(runs.iter().all(|(_, replica)| *replica == 0), "{runs:?}");
    // The owner asked the store once, to claim the scope; each other replica
    // once, and then trusted "owned elsewhere" for the sweep interval.
    let attempts: Vec<usize> = replicas.iter().map(|replica| replica.attempts()).collect();
    assert_eq!(attempts, vec![1, 1, 1]);
    // The store shows the scope's lease, held by the owner with its term.
    let state = store.lock_state("scope:sticky-a").await?;
    assert_eq!(state.holders.len(), 1);
    assert_eq!(state.holders[0].locked_by, "replica-0");
    Ok(())
}

#[tokio::test]
async fn jobs_of_one_scope_run_on_its_owner() -> anyhow::Result<()> {
    let (_store, replicas) = replicas_of_a_new_store(3);
    let runs = Runs::default();
    // Replica 1 ticks first and owns the scope; the other job follows it.
    report(&replicas[1], 1, "db-b", &runs).await?;
    for _ in 0..5 {
        for (index, replica) in replicas.iter().enumerate() {
            cleanup(replica, index, "db-b", &runs).await?;
            report(replica, index, "db-b", &runs).await?;
        }
    }
    let runs = taken(&runs);
    assert_eq!(runs.len(), 11, "{runs:?}");
    assert!(runs.iter().all(|(_, replica)| *replica == 1), "{runs:?}");
    Ok(())
}

#[scheduler_lock(name = "slow-{tenant}", scope = "{tenant}", provider = replica, lock_at_least_for = "300ms")]
async fn slow(replica: &Replica, tenant: &str, running: &AtomicUsize, most: &AtomicUsize) {
    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test]
async fn two_runs_of_one_job_never_overlap_on_the_owner() -> anyhow::Result<()> {
    install();
    let store = InMemoryLockProvider::new();
    let replica = replica(&store, "owner");
    let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (first, second) = tokio::join!(
        slow(&replica, "overlap-c", &running, &most),
        slow(&replica, "overlap-c", &running, &most)
    );
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert_eq!(
        [first?.is_some(), second?.is_some()]
            .iter()
            .filter(|ran| **ran)
            .count(),
        1
    );
    // lock_at_least_for is kept locally: a tick 150 ms after the start skips,
    // one after 300 ms runs.
    let attempts = replica.attempts();
    assert_eq!(slow(&replica, "overlap-c", &running, &most).await?, None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        slow(&replica, "overlap-c", &running, &most).await?,
        Some(())
    );
    assert_eq!(replica.attempts(), attempts, "the owner asked nobody");
    Ok(())
}

#[scheduler_lock(name = "long-{tenant}", scope = "{tenant}", provider = replica, cancel_on_lease_loss = true)]
async fn long(replica: &Replica, tenant: &str, dropped: Arc<AtomicUsize>) {
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _count = CountDrop(dropped);
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_lost_scope_cancels_its_runs_before_another_replica_takes_it() -> anyhow::Result<()> {
    let (store, replicas) = replicas_of_a_new_store(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let owner = replicas[0].clone();
    let run = {
        let dropped = dropped.clone();
        tokio::spawn(async move { long(&owner, "lost-d", dropped).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.force_release("scope:lost-d").await?, 1);
    // The owner's next renewal (every 2/15 of the lease) finds the lease gone.
    let outcome = tokio::time::timeout(LEASE, run).await??;
    assert!(
        matches!(outcome, Err(LockError::LeaseLost { ref name }) if name == "long-lost-d"),
        "{outcome:?}"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // The scope is free: the other replica takes it at its next tick.
    let runs = Runs::default();
    report(&replicas[1], 1, "lost-d", &runs).await?;
    assert_eq!(taken(&runs).len(), 1);
    Ok(())
}

#[tokio::test]
async fn scopes_spread_over_replicas_one_claim_per_sweep_each() -> anyhow::Result<()> {
    let (store, replicas) = replicas_of_a_new_store(4);
    let runs = Runs::default();
    let tenants: Vec<String> = (0..40).map(|i| format!("spread-{i}")).collect();
    let deadline = Instant::now() + SWEEP * 30;
    loop {
        for (index, replica) in replicas.iter().enumerate() {
            for tenant in &tenants {
                report(replica, index, tenant, &runs).await?;
            }
        }
        let owners = owners(&store, &tenants).await?;
        if owners.len() == 40 || Instant::now() > deadline {
            let mut per_replica: HashMap<String, usize> = HashMap::new();
            for owner in owners.values() {
                *per_replica.entry(owner.clone()).or_default() += 1;
            }
            assert_eq!(owners.len(), 40, "every scope owned: {per_replica:?}");
            assert_eq!(per_replica.len(), 4, "{per_replica:?}");
            assert!(
                per_replica.values().all(|count| (8..=12).contains(count)),
                "10 ± 2 each: {per_replica:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn owners(
    store: &InMemoryLockProvider,
    tenants: &[String],
) -> anyhow::Result<HashMap<String, String>> {
    let mut owners = HashMap::new();
    for tenant in tenants {
        let state = store.lock_state(&format!("scope:{tenant}")).await?;
        if let Some(holder) = state.holders.first() {
            owners.insert(tenant.clone(), holder.locked_by.clone());
        }
    }
    Ok(owners)
}

#[test]
fn a_dead_owners_scope_is_taken_over_within_lease_and_sweep() -> anyhow::Result<()> {
    let (_store, replicas) = replicas_of_a_new_store(2);
    let runs = Runs::default();
    // The owner lives on a runtime of its own, which then stops: its keeper
    // dies with it, as in a crash, and the lease runs out.
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(report(&replicas[0], 0, "dead-e", &runs))?;
    }
    let stopped = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Seen held while the lease lasts; taken at the first tick after it.
        loop {
            report(&replicas[1], 1, "dead-e", &runs).await?;
            if taken(&runs).len() == 2 {
                break;
            }
            anyhow::ensure!(
                stopped.elapsed() < LEASE + SWEEP * 2,
                "not taken over within lease + sweep"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = stopped.elapsed();
        assert!(
            took >= LEASE - SWEEP,
            "taken over before the lease ended: {took:?}"
        );
        Ok(())
    })?;
    assert_eq!(
        taken(&runs),
        vec![
            ("report-dead-e".to_owned(), 0),
            ("report-dead-e".to_owned(), 1)
        ]
    );
    Ok(())
}

#[scheduler_lock(name = "fenced-{tenant}", scope = "{tenant}", provider = replica)]
async fn fenced(replica: &Replica, tenant: &str) -> Option<u64> {
    let lock = shedlock::current_lock()?;
    shedlock::assert_locked();
    lock.fencing_token().await.ok()
}

#[tokio::test]
async fn a_scoped_run_sees_the_scopes_term_as_its_token() -> anyhow::Result<()> {
    install();
    let store = InMemoryLockProvider::new();
    let replica = replica(&store, "owner");
    let first = fenced(&replica, "term-f").await?.flatten();
    let second = fenced(&replica, "term-f").await?.flatten();
    let state = store.lock_state("scope:term-f").await?;
    assert_eq!(first, state.holders[0].fencing_token);
    assert_eq!(first, second, "one term for the whole ownership");
    Ok(())
}
