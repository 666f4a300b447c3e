//! Lock kinds side by side: shared and counted holders, exclusive holders
//! beside them and waiting behind them, leases that end, and fencing tokens
//! across kinds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockGuard, LockMode, LockingTaskExecutor};

use super::{AdminProvider, admin, shared, state, with_kind};
use crate::conformance::{
    LONG, Make, PAST_SHORT, SHORT, WaitingJob, acquire, assert_held, config, config_named, extend,
    unique_name, unlock,
};

/// Shared holders (capacity unset: unlimited) hold the lock together.
pub async fn shared_holders_run_together<P: AdminProvider>(make: impl Make<P>) {
    let (a, b, c) = make.three().await;
    let name = unique_name("shared-together");
    let reader = shared(&name, 1, None);
    let guards = vec![
        acquire(&a, &reader).await,
        acquire(&b, &reader).await,
        acquire(&c, &reader).await,
    ];
    assert_eq!(state(&a, &name).await.holders.len(), 3);
    for guard in guards {
        unlock(guard).await;
    }
    assert!(!state(&a, &name).await.is_locked());
}

/// An exclusive holder keeps shared holders out, and the other way round.
pub async fn exclusive_and_shared_exclude_each_other<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("shared-exclusive");
    let writer = config_named(&name);
    let reader = shared(&name, 1, None);
    let exclusive = acquire(&a, &writer).await;
    assert_held(&b, &reader).await;
    unlock(exclusive).await;
    let first = acquire(&b, &reader).await;
    let second = acquire(&a, &reader).await;
    assert_held(&a, &writer).await;
    unlock(first).await;
    assert_held(&b, &writer).await;
    unlock(second).await;
    unlock(acquire(&b, &writer).await).await;
}

/// Counted holders: capacity 9, 3 permits each: three hold, a fourth is refused
/// until one lets go.
pub async fn counted_permits_never_exceed_capacity<P: AdminProvider>(make: impl Make<P>) {
    let providers = [
        make.one().await,
        make.one().await,
        make.one().await,
        make.one().await,
    ];
    let name = unique_name("counted");
    let job = shared(&name, 3, Some(9));
    let mut guards = Vec::new();
    for provider in &providers[..3] {
        guards.push(acquire(provider, &job).await);
    }
    assert_held(&providers[3], &job).await;
    let small = shared(&name, 1, Some(9));
    assert_held(&providers[3], &small).await;
    assert_eq!(state(&providers[0], &name).await.permits_held(), 9);
    if let Some(guard) = guards.pop() {
        unlock(guard).await;
    }
    guards.push(acquire(&providers[3], &job).await);
    for guard in guards {
        unlock(guard).await;
    }
}

/// A reader (one permit, capacity unset) holding a new lock, and a writer's
/// executor on another provider.
struct ReaderHolds<P: AdminProvider> {
    name: String,
    reader: LockConfiguration,
    readers: P,
    held: LockGuard,
    writer: LockingTaskExecutor<P>,
}

async fn a_reader_holds<P: AdminProvider>(make: &impl Make<P>, case: &str) -> ReaderHolds<P> {
    let (writer, readers) = make.executor_and_other().await;
    let name = unique_name(case);
    let reader = shared(&name, 1, None);
    let held = acquire(&readers, &reader).await;
    ReaderHolds {
        name,
        reader,
        readers,
        held,
        writer,
    }
}

/// An exclusive waiter is not starved by shared holders: once it waits, new
/// shared holders wait behind it; it runs when the current ones end.
pub async fn exclusive_waiter_goes_before_new_shared_holders<P: AdminProvider>(make: impl Make<P>) {
    let ReaderHolds {
        name,
        reader,
        readers,
        held: first,
        writer,
    } = a_reader_holds(&make, "no-starvation").await;
    let writer = WaitingJob::spawn(writer, config_named(&name));
    // Give the writer time to queue, then show a new reader must wait.
    let queued = Instant::now() + Duration::from_secs(5);
    while state(&readers, &name).await.exclusive_waiters == 0 {
        if Instant::now() > queued {
            fail!("the exclusive waiter never queued");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_held(&readers, &reader).await;
    unlock(first).await;
    writer
        .ran_within(Duration::from_secs(5), "the readers' end")
        .await;
    assert_eq!(state(&readers, &name).await.exclusive_waiters, 0);
    unlock(acquire(&readers, &reader).await).await;
}

/// A shared holder's lease ends on its own: its permits return although it never released.
pub async fn shared_lease_ends_and_permits_return<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("shared-lease-ends");
    let short = with_kind(config(&name, SHORT, Duration::ZERO), 2, Some(2));
    let abandoned = acquire(&a, &short).await;
    std::mem::forget(abandoned); // a crashed holder: no release, no drop
    let job = shared(&name, 1, Some(2));
    assert_held(&b, &job).await;
    tokio::time::sleep(PAST_SHORT).await;
    let guard = acquire(&b, &shared(&name, 2, Some(2))).await;
    unlock(guard).await;
}

/// A shared holder whose lease ended never releases or extends the next holder's permits.
pub async fn stale_shared_holder_never_touches_the_next<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("stale-shared");
    let short = with_kind(config(&name, SHORT, Duration::ZERO), 1, Some(1));
    let mut stale = acquire(&a, &short).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&b, &shared(&name, 1, Some(1))).await;
    assert!(!extend(&mut stale, LONG).await, "a stale holder extended");
    let _ = stale.unlock().await;
    let seen = state(&b, &name).await;
    assert_eq!(
        seen.holders.len(),
        1,
        "the next holder was released: {seen:?}"
    );
    if let Some(token) = seen.holders[0].fencing_token {
        assert_eq!(token, crate::conformance::token_of(&next).await, "{seen:?}");
    }
    unlock(next).await;
}

/// `lock_at_least_for` is kept per shared holder.
pub async fn lock_at_least_for_applies_per_shared_holder<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("shared-least");
    let kept = with_kind(config(&name, LONG, SHORT), 1, Some(1));
    unlock(acquire(&a, &kept).await).await;
    assert_held(&b, &shared(&name, 1, Some(1))).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&b, &shared(&name, 1, Some(1))).await).await;
}

/// Under contention from many tasks on several connections, the permits
/// held never exceed the capacity.
pub async fn permits_never_exceed_capacity_under_contention<P: AdminProvider>(make: impl Make<P>) {
    const CAPACITY: u64 = 3;
    let name = unique_name("contention");
    let inside = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let executor = Arc::new(make.executor().await);
        for task in 0..4 {
            let (executor, inside, most, runs) =
                (executor.clone(), inside.clone(), most.clone(), runs.clone());
            let job = if task == 0 {
                config_named(&name) // one exclusive among the shared
            } else {
                shared(&name, 1, Some(3))
            };
            tasks.push(tokio::spawn(async move {
                for _ in 0..15 {
                    let weight = match job.mode() {
                        LockMode::Exclusive => CAPACITY,
                        LockMode::Shared { permits } => u64::from(permits),
                    };
                    let ran = executor
                        .execute(&job, async {
                            let now = inside.fetch_add(weight, Ordering::SeqCst) + weight;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            inside.fetch_sub(weight, Ordering::SeqCst);
                        })
                        .await;
                    match ran {
                        Ok(Some(())) => {
                            runs.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(None) => tokio::task::yield_now().await,
                        Err(err) => fail!("a locked run failed: {err}"),
                    }
                }
            }));
        }
    }
    for task in tasks {
        if let Err(err) = task.await {
            fail!("a contending task failed: {err}");
        }
    }
    assert!(runs.load(Ordering::SeqCst) > 0, "nothing ran");
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= CAPACITY,
        "{most} permits were held at once (capacity {CAPACITY})"
    );
}

/// A shared holder extended past its first lease still counts after that
/// lease would have ended, beside a holder with a shorter lease.
pub async fn extended_shared_holder_keeps_its_permits<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("extended-shared");
    let short = with_kind(config(&name, SHORT, Duration::ZERO), 1, Some(2));
    let mut long = acquire(&a, &short).await;
    let brief = acquire(&b, &short).await;
    assert!(extend(&mut long, LONG).await);
    tokio::time::sleep(PAST_SHORT).await;
    let _ = brief.unlock().await; // ended already
    let seen = state(&b, &name).await;
    assert_eq!(seen.holders.len(), 1, "{seen:?}");
    let newcomer = acquire(&b, &shared(&name, 1, Some(2))).await;
    assert_held(&b, &shared(&name, 1, Some(2))).await;
    assert_held(&b, &config_named(&name)).await;
    unlock(newcomer).await;
    unlock(long).await;
}

/// An exclusive waiter that gives up lets shared holders back in soon
/// after (its place lapses).
pub async fn a_waiter_that_gives_up_frees_its_place<P: AdminProvider>(make: impl Make<P>) {
    let ReaderHolds {
        name,
        reader,
        readers,
        held,
        writer,
    } = a_reader_holds(&make, "gave-up").await;
    let exclusive = config_named(&name);
    let ran = writer
        .execute_waiting(&exclusive, Duration::from_millis(400), async {})
        .await
        .unwrap_or_else(|err| fail!("waiting failed: {err}"));
    assert!(ran.is_none(), "the writer ran beside a reader");
    // Its place lasts until the end of its wait at most.
    let deadline = Instant::now() + Duration::from_secs(3);
    let guard = loop {
        if let Ok(Some(guard)) = readers.try_lock(&reader).await {
            break guard;
        }
        if Instant::now() > deadline {
            fail!("shared holders were kept out after the exclusive waiter gave up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    unlock(guard).await;
    unlock(held).await;
}

/// Fencing tokens keep increasing across exclusive, shared and counted
/// holders, and across a force-release.
pub async fn tokens_increase_across_kinds<P: AdminProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let name = unique_name("kinds-tokens");
    let mut last = 0;
    for round in 0..3 {
        let exclusive = acquire(&provider, &config_named(&name)).await;
        assert!(
            crate::conformance::token_of(&exclusive).await > last,
            "round {round}"
        );
        last = crate::conformance::token_of(&exclusive).await;
        unlock(exclusive).await;
        let reader = acquire(&provider, &shared(&name, 1, None)).await;
        let counted = acquire(&provider, &shared(&name, 2, None)).await;
        assert!(
            crate::conformance::token_of(&reader).await > last
                && crate::conformance::token_of(&counted).await
                    > crate::conformance::token_of(&reader).await
        );
        last = crate::conformance::token_of(&counted).await;
        admin("force_release", provider.force_release(&name)).await;
        let _ = reader.unlock().await;
        let _ = counted.unlock().await;
    }
}
