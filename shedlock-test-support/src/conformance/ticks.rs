//! Ticks ([`LockConfiguration::for_tick`]): each tick of a schedule is
//! claimed by one acquisition across all replicas, whatever the job's length;
//! the claim and the lock are one step.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use shedlock_core::{LockConfiguration, LockError, LockProvider};

use super::{Make, acquire, config_named, unique_name, unlock};

/// The instant of tick `n` of a schedule ticking every second.
fn tick(n: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n)
}

/// `config` claiming tick `n`.
fn at(config: &LockConfiguration, n: u64) -> LockConfiguration {
    config.clone().for_tick(tick(n))
}

/// Claims tick `n` of `config` (the lock must be free and the tick
/// unclaimed), releases at once, and returns the tick claimed before.
async fn claim<P: LockProvider>(
    provider: &P,
    config: &LockConfiguration,
    n: u64,
) -> Option<SystemTime> {
    let guard = acquire(provider, &at(config, n)).await;
    let previous = guard.previous_tick();
    unlock(guard).await;
    previous
}

/// Whether claiming tick `n` of `config` takes the lock (released at once).
async fn claims<P: LockProvider>(provider: &P, config: &LockConfiguration, n: u64) -> bool {
    match provider.try_lock(&at(config, n)).await {
        Ok(Some(guard)) => {
            unlock(guard).await;
            true
        }
        Ok(None) => false,
        Err(err) => fail!("claiming tick {n} of '{}' failed: {err}", config.name()),
    }
}

/// A tick claimed and released at once is not claimed again, by another
/// replica either, though the lock is free; the lock itself still is.
pub async fn a_claimed_tick_is_not_claimed_again<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("tick-once"));
    assert_eq!(
        claim(&first, &config, 1).await,
        None,
        "no tick was claimed before"
    );
    assert!(!claims(&second, &config, 1).await, "tick 1 ran twice");
    assert!(
        !claims(&first, &config, 1).await,
        "tick 1 ran twice on one replica"
    );
    // Not held: an acquisition without a tick takes it.
    unlock(acquire(&second, &config).await).await;
}

/// A later tick is claimed (and knows the tick before it); an earlier one
/// than the last claimed is not.
pub async fn later_ticks_are_claimed_earlier_ones_not<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("tick-order"));
    claim(&first, &config, 10).await;
    assert_eq!(
        claim(&second, &config, 12).await,
        Some(tick(10)),
        "the claim of tick 12 must report tick 10 as the one before"
    );
    assert!(
        !claims(&first, &config, 11).await,
        "tick 11 ran after tick 12"
    );
    assert!(!claims(&first, &config, 12).await, "tick 12 ran twice");
    assert_eq!(claim(&first, &config, 13).await, Some(tick(12)));
}

/// An attempt that finds the lock held claims nothing: once the lock is
/// free, the same tick is still there to claim.
pub async fn a_tick_is_claimed_only_with_the_lock<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("tick-held"));
    let held = acquire(&first, &config).await;
    assert!(!claims(&second, &config, 1).await, "the lock was held");
    unlock(held).await;
    assert_eq!(claim(&second, &config, 1).await, None);
}

/// Replicas racing for the same ticks, each releasing as soon as it has the
/// lock: exactly one claim per tick, because the claim and the lock are one
/// step (no window in which a second replica takes a tick the first has
/// just released).
pub async fn racing_replicas_claim_each_tick_once<P: LockProvider + 'static>(make: impl Make<P>) {
    const REPLICAS: usize = 3;
    const TASKS_PER_REPLICA: usize = 4;
    const TICKS: u64 = 15;
    let config = config_named(&unique_name("tick-race"));
    let mut providers = Vec::new();
    for _ in 0..REPLICAS {
        providers.push(Arc::new(make.one().await));
    }
    for n in 1..=TICKS {
        let winners = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(REPLICAS * TASKS_PER_REPLICA));
        let mut tasks = tokio::task::JoinSet::new();
        for provider in &providers {
            for _ in 0..TASKS_PER_REPLICA {
                let (provider, config) = (provider.clone(), config.clone());
                let (winners, start) = (winners.clone(), start.clone());
                tasks.spawn(async move {
                    start.wait().await;
                    if claims(&*provider, &config, n).await {
                        winners.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = joined {
                fail!("a racing replica failed: {err}");
            }
        }
        assert_eq!(
            winners.load(Ordering::SeqCst),
            1,
            "tick {n}: {} runs instead of one",
            winners.load(Ordering::SeqCst)
        );
    }
}

/// A tick is claimed by one exclusive holder: a shared acquisition with a
/// tick is refused as a configuration error.
pub async fn a_shared_tick_claim_is_refused<P: LockProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let config = at(&config_named(&unique_name("tick-shared")), 1).shared();
    match provider.try_lock(&config).await {
        Err(LockError::InvalidConfiguration(_)) => {}
        other => fail!("a shared acquisition with a tick must be refused, not {other:?}"),
    }
}
