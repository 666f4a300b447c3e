//! Conformance cases for lock kinds: shared and counted holders, exclusive
//! holders beside them, capacity, pause and resume, the operators' API, and
//! nested calls on a held lock (reentrancy covers only what the task holds).
//! Run with [`lock_kinds_conformance_tests!`](crate::lock_kinds_conformance_tests)
//! by providers that are also a [`LockAdmin`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{
    LockAdmin, LockConfiguration, LockError, LockMode, LockProvider, LockState, LockingTaskExecutor,
};

use crate::conformance::{
    LONG, PAST_SHORT, SHORT, acquire, assert_held, config, extend, unique_name, unlock,
};

/// A provider the kinds suite can run against.
pub trait AdminProvider: LockProvider + LockAdmin {}
impl<P: LockProvider + LockAdmin> AdminProvider for P {}

fn shared(name: &str, permits: u32, capacity: Option<u32>) -> LockConfiguration {
    let config = config(name, LONG, Duration::ZERO)
        .with_permits(permits)
        .unwrap_or_else(|err| fail!("test configuration rejected: {err}"));
    match capacity {
        Some(capacity) => config
            .with_capacity(capacity)
            .unwrap_or_else(|err| fail!("test capacity rejected: {err}")),
        None => config,
    }
}

async fn state<P: LockAdmin>(provider: &P, name: &str) -> LockState {
    provider
        .lock_state(name)
        .await
        .unwrap_or_else(|err| fail!("reading the state of '{name}' failed: {err}"))
}

async fn admin<T>(what: &str, result: impl Future<Output = Result<T, LockError>>) -> T {
    result
        .await
        .unwrap_or_else(|err| fail!("{what} failed: {err}"))
}

/// Shared holders (capacity unset: unlimited) hold the lock together.
pub async fn shared_holders_run_together<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b, c) = (make().await, make().await, make().await);
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
pub async fn exclusive_and_shared_exclude_each_other<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("shared-exclusive");
    let writer = config(&name, LONG, Duration::ZERO);
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
pub async fn counted_permits_never_exceed_capacity<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let providers = [make().await, make().await, make().await, make().await];
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

/// A capacity stored by an operator wins over the acquisition's default.
pub async fn stored_capacity_wins<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("stored-capacity");
    admin("set_capacity", a.set_capacity(&name, 2)).await;
    let job = shared(&name, 1, Some(9));
    let first = acquire(&a, &job).await;
    let second = acquire(&b, &job).await;
    assert_held(&b, &job).await;
    let seen = state(&b, &name).await;
    assert_eq!(seen.capacity, Some(2));
    assert!(!seen.paused);
    admin("set_capacity", b.set_capacity(&name, 3)).await;
    let third = acquire(&b, &job).await;
    for guard in [first, second, third] {
        unlock(guard).await;
    }
}

/// Paused (capacity 0): nobody acquires, exclusive or shared; resume restores
/// the capacity from before the pause.
pub async fn pause_refuses_everyone_until_resumed<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("pause");
    admin("set_capacity", a.set_capacity(&name, 3)).await;
    admin("pause", a.pause(&name)).await;
    admin("pause twice", a.pause(&name)).await;
    let seen = state(&b, &name).await;
    assert!(seen.paused, "{seen:?}");
    assert_eq!(seen.capacity, Some(0));
    assert_held(&b, &config(&name, LONG, Duration::ZERO)).await;
    assert_held(&b, &shared(&name, 1, Some(5))).await;
    admin("resume", b.resume(&name)).await;
    let seen = state(&a, &name).await;
    assert!(!seen.paused, "{seen:?}");
    assert_eq!(seen.capacity, Some(3), "resume restores the capacity");
    let guard = acquire(&a, &shared(&name, 3, None)).await;
    unlock(guard).await;
}

/// An ordinary lock can be paused and resumed too; resuming a lock that was
/// never given a capacity leaves it with none.
pub async fn pause_and_resume_an_ordinary_lock<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("pause-ordinary");
    let job = config(&name, LONG, Duration::ZERO);
    admin("pause", a.pause(&name)).await;
    assert_held(&b, &job).await;
    admin("resume", a.resume(&name)).await;
    assert_eq!(state(&a, &name).await.capacity, None);
    unlock(acquire(&b, &job).await).await;
}

/// Pausing does not end current leases: holders finish their runs.
pub async fn pause_keeps_current_holders<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("pause-holders");
    let mut guard = acquire(&a, &config(&name, LONG, Duration::ZERO)).await;
    admin("pause", b.pause(&name)).await;
    assert!(
        extend(&mut guard, LONG).await,
        "a pause must not end a lease"
    );
    assert_eq!(state(&b, &name).await.holders.len(), 1);
    unlock(guard).await;
    admin("resume", b.resume(&name)).await;
}

/// A job waiting on a paused lock starts soon after the resume.
pub async fn waiting_job_starts_after_resume<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (operator, waiter) = (make().await, LockingTaskExecutor::new(make().await));
    let name = unique_name("resume-wakes");
    admin("pause", operator.pause(&name)).await;
    let job = config(&name, LONG, Duration::ZERO);
    let resumed = Arc::new(AtomicU64::new(0));
    let seen = resumed.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .execute_waiting(&job, Duration::from_secs(20), async move {
                seen.load(Ordering::SeqCst)
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    resumed.store(1, Ordering::SeqCst);
    admin("resume", operator.resume(&name)).await;
    let ran = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| fail!("the waiter did not run within 5 s of the resume"));
    match ran {
        Ok(Ok(Some(seen))) => assert_eq!(seen, 1, "the waiter ran while paused"),
        other => fail!("the waiter should have run: {other:?}"),
    }
}

/// Raising the capacity lets a waiting shared job in.
pub async fn raised_capacity_admits_a_waiter<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (holder, waiter) = (make().await, LockingTaskExecutor::new(make().await));
    let name = unique_name("raise-capacity");
    let job = shared(&name, 1, Some(1));
    let guard = acquire(&holder, &job).await;
    let waiting = tokio::spawn(async move {
        waiter
            .execute_waiting(&job, Duration::from_secs(20), async {})
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin("set_capacity", holder.set_capacity(&name, 2)).await;
    let ran = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| fail!("the waiter did not run within 5 s of the new capacity"));
    assert!(
        matches!(ran, Ok(Ok(Some(())))),
        "the waiter should have run: {ran:?}"
    );
    unlock(guard).await;
}

/// An exclusive waiter is not starved by shared holders: once it waits, new
/// shared holders wait behind it; it runs when the current ones end.
pub async fn exclusive_waiter_goes_before_new_shared_holders<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (readers, writer) = (make().await, LockingTaskExecutor::new(make().await));
    let name = unique_name("no-starvation");
    let reader = shared(&name, 1, None);
    let first = acquire(&readers, &reader).await;
    let exclusive = config(&name, LONG, Duration::ZERO);
    let order = Arc::new(AtomicU64::new(0));
    let writer_saw = order.clone();
    let waiting = tokio::spawn(async move {
        writer
            .execute_waiting(&exclusive, Duration::from_secs(20), async move {
                writer_saw.fetch_add(1, Ordering::SeqCst)
            })
            .await
    });
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
    let ran = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| fail!("the exclusive waiter did not run after the readers ended"));
    assert!(
        matches!(ran, Ok(Ok(Some(0)))),
        "the writer should have run: {ran:?}"
    );
    assert_eq!(state(&readers, &name).await.exclusive_waiters, 0);
    unlock(acquire(&readers, &reader).await).await;
}

/// A shared holder's lease ends on its own: its permits return although it never released.
pub async fn shared_lease_ends_and_permits_return<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("shared-lease-ends");
    let short = config(&name, SHORT, Duration::ZERO)
        .with_permits(2)
        .and_then(|config| config.with_capacity(2))
        .unwrap_or_else(|err| fail!("{err}"));
    let abandoned = acquire(&a, &short).await;
    std::mem::forget(abandoned); // a crashed holder: no release, no drop
    let job = shared(&name, 1, Some(2));
    assert_held(&b, &job).await;
    tokio::time::sleep(PAST_SHORT).await;
    let guard = acquire(&b, &shared(&name, 2, Some(2))).await;
    unlock(guard).await;
}

/// A shared holder whose lease ended never releases or extends the next holder's permits.
pub async fn stale_shared_holder_never_touches_the_next<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("stale-shared");
    let short = config(&name, SHORT, Duration::ZERO)
        .with_permits(1)
        .and_then(|config| config.with_capacity(1))
        .unwrap_or_else(|err| fail!("{err}"));
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
pub async fn lock_at_least_for_applies_per_shared_holder<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("shared-least");
    let kept = config(&name, LONG, SHORT)
        .with_permits(1)
        .and_then(|config| config.with_capacity(1))
        .unwrap_or_else(|err| fail!("{err}"));
    unlock(acquire(&a, &kept).await).await;
    assert_held(&b, &shared(&name, 1, Some(1))).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&b, &shared(&name, 1, Some(1))).await).await;
}

/// The state shows each holder: who, since when, how long it has left, its permits.
pub async fn lock_state_describes_holders<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("state");
    let empty = state(&a, &name).await;
    assert_eq!(empty.name, name);
    assert!(empty.holders.is_empty() && !empty.paused && empty.capacity.is_none());
    let two = acquire(&a, &shared(&name, 2, Some(5))).await;
    let one = acquire(&b, &shared(&name, 1, Some(5))).await;
    let seen = state(&b, &name).await;
    assert_eq!(seen.holders.len(), 2, "{seen:?}");
    assert_eq!(seen.permits_held(), 3);
    let mut permits: Vec<_> = seen.holders.iter().map(|h| h.mode).collect();
    permits.sort_by_key(|mode| mode.permits());
    assert_eq!(
        permits,
        [
            LockMode::Shared { permits: 1 },
            LockMode::Shared { permits: 2 }
        ]
    );
    for holder in &seen.holders {
        assert!(!holder.locked_by.is_empty(), "{holder:?}");
        assert!(holder.locked_at.is_some(), "{holder:?}");
        let left = holder
            .lease_left
            .unwrap_or_else(|| fail!("no lease end: {holder:?}"));
        assert!(left <= LONG && left > LONG / 2, "{holder:?}");
    }
    unlock(two).await;
    unlock(one).await;
    let exclusive = acquire(&a, &config(&name, LONG, Duration::ZERO)).await;
    let seen = state(&b, &name).await;
    assert_eq!(seen.holders.len(), 1);
    assert_eq!(seen.holders[0].mode, LockMode::Exclusive);
    let listed = admin("list_locks", b.list_locks()).await;
    assert!(
        listed
            .iter()
            .any(|lock| lock.name == name && lock.is_locked()),
        "'{name}' missing from the list"
    );
    unlock(exclusive).await;
}

/// A holder that renews its lease (a leader, a scope's owner) shows its
/// term and how long ago it last renewed, by the store's clock; the next
/// holder of the name never shows the previous holder's renewals.
pub async fn a_renewing_holder_shows_its_term_and_last_renewal<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("renewed");
    let exclusive = config(&name, LONG, Duration::ZERO);
    let mut leader = acquire(&a, &exclusive).await;
    let term = crate::conformance::token_of(&leader).await;
    let fresh = state(&b, &name).await;
    assert_eq!(fresh.holders.len(), 1, "{fresh:?}");
    assert_eq!(
        fresh.holders[0].renewals.unwrap_or(0),
        0,
        "renewals before any: {fresh:?}"
    );
    assert!(extend(&mut leader, LONG).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(extend(&mut leader, LONG).await);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let seen = state(&b, &name).await;
    let holder = &seen.holders[0];
    assert_eq!(holder.fencing_token, Some(term), "{seen:?}");
    assert_eq!(holder.renewals, Some(2), "{seen:?}");
    let ago = holder
        .renewed_ago
        .unwrap_or_else(|| fail!("no renewal age after two renewals: {seen:?}"));
    assert!(
        ago >= Duration::from_millis(140) && ago < Duration::from_secs(5),
        "last renewal {ago:?} ago, 150 ms after it: {seen:?}"
    );
    unlock(leader).await;
    let next = acquire(&b, &exclusive).await;
    let next_term = crate::conformance::token_of(&next).await;
    let after = state(&a, &name).await;
    let holder = &after.holders[0];
    assert_eq!(holder.renewals.unwrap_or(0), 0, "{after:?}");
    assert!(
        holder.fencing_token.is_none_or(|token| token == next_term),
        "the next holder shows another term than its own {next_term}: {after:?}"
    );
    unlock(next).await;
}

/// Force-release ends every lease; the old holders find them gone, and the
/// next holder's token is greater.
pub async fn force_release_ends_every_lease<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("force");
    let mut first = acquire(&a, &shared(&name, 1, None)).await;
    let second = acquire(&a, &shared(&name, 1, None)).await;
    let released = admin("force_release", b.force_release(&name)).await;
    assert_eq!(released, 2);
    let next = acquire(&b, &config(&name, LONG, Duration::ZERO)).await;
    assert!(
        crate::conformance::token_of(&next).await > crate::conformance::token_of(&second).await
    );
    assert!(
        !extend(&mut first, LONG).await,
        "a force-released lease was extended"
    );
    let _ = second.unlock().await;
    assert_eq!(state(&b, &name).await.holders.len(), 1);
    unlock(next).await;
    assert_eq!(admin("force_release", b.force_release(&name)).await, 0);
}

/// Under contention from many tasks on several connections, the permits
/// held never exceed the capacity.
pub async fn permits_never_exceed_capacity_under_contention<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    const CAPACITY: u64 = 3;
    let name = unique_name("contention");
    let inside = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let executor = Arc::new(LockingTaskExecutor::new(make().await));
        for task in 0..4 {
            let (executor, inside, most, runs) =
                (executor.clone(), inside.clone(), most.clone(), runs.clone());
            let job = if task == 0 {
                config(&name, LONG, Duration::ZERO) // one exclusive among the shared
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

/// `set_capacity(0)` pauses like `pause`: resume brings the capacity back.
pub async fn capacity_zero_pauses_and_resume_restores<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let provider = make().await;
    let name = unique_name("capacity-zero");
    admin("set_capacity", provider.set_capacity(&name, 4)).await;
    admin("set_capacity 0", provider.set_capacity(&name, 0)).await;
    admin("set_capacity 0 again", provider.set_capacity(&name, 0)).await;
    assert!(state(&provider, &name).await.paused);
    let listed = admin("list_locks", provider.list_locks()).await;
    assert!(
        listed.iter().any(|lock| lock.name == name && lock.paused),
        "a paused lock without holders must be listed"
    );
    admin("resume", provider.resume(&name)).await;
    assert_eq!(state(&provider, &name).await.capacity, Some(4));
    admin("pause", provider.pause(&name)).await;
    admin(
        "set_capacity 0 while paused",
        provider.set_capacity(&name, 0),
    )
    .await;
    admin("resume", provider.resume(&name)).await;
    assert_eq!(state(&provider, &name).await.capacity, Some(4));
}

/// Lowering the capacity below what is held keeps current holders and
/// refuses new ones until enough permits come back.
pub async fn lowered_capacity_keeps_holders_and_refuses_newcomers<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("lowered");
    let job = shared(&name, 1, Some(3));
    let mut first = acquire(&a, &job).await;
    let second = acquire(&a, &job).await;
    admin("set_capacity", b.set_capacity(&name, 1)).await;
    assert!(
        extend(&mut first, LONG).await,
        "a holder lost its lease to a lower capacity"
    );
    assert_held(&b, &job).await;
    unlock(second).await;
    assert_held(&b, &job).await; // one held, capacity 1
    unlock(first).await;
    unlock(acquire(&b, &job).await).await;
}

/// A shared holder extended past its first lease still counts after that
/// lease would have ended, beside a holder with a shorter lease.
pub async fn extended_shared_holder_keeps_its_permits<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (a, b) = (make().await, make().await);
    let name = unique_name("extended-shared");
    let short = config(&name, SHORT, Duration::ZERO)
        .with_permits(1)
        .and_then(|config| config.with_capacity(2))
        .unwrap_or_else(|err| fail!("{err}"));
    let mut long = acquire(&a, &short).await;
    let brief = acquire(&b, &short).await;
    assert!(extend(&mut long, LONG).await);
    tokio::time::sleep(PAST_SHORT).await;
    let _ = brief.unlock().await; // ended already
    let seen = state(&b, &name).await;
    assert_eq!(seen.holders.len(), 1, "{seen:?}");
    let newcomer = acquire(&b, &shared(&name, 1, Some(2))).await;
    assert_held(&b, &shared(&name, 1, Some(2))).await;
    assert_held(&b, &config(&name, LONG, Duration::ZERO)).await;
    unlock(newcomer).await;
    unlock(long).await;
}

/// An exclusive waiter that gives up lets shared holders back in soon
/// after (its place lapses).
pub async fn a_waiter_that_gives_up_frees_its_place<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (readers, writer) = (make().await, LockingTaskExecutor::new(make().await));
    let name = unique_name("gave-up");
    let reader = shared(&name, 1, None);
    let held = acquire(&readers, &reader).await;
    let exclusive = config(&name, LONG, Duration::ZERO);
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
pub async fn tokens_increase_across_kinds<P: AdminProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let provider = make().await;
    let name = unique_name("kinds-tokens");
    let mut last = 0;
    for round in 0..3 {
        let exclusive = acquire(&provider, &config(&name, LONG, Duration::ZERO)).await;
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

/// What a nested locked call saw from inside the outer one.
type Nested<T> = Result<Option<T>, LockError>;

/// Runs `nested` inside a run of `executor` under `outer`; fails the test
/// when the outer run itself did not run.
async fn inside<P: LockProvider, T>(
    executor: &LockingTaskExecutor<P>,
    outer: &LockConfiguration,
    nested: impl Future<Output = T>,
) -> T {
    match executor.execute(outer, nested).await {
        Ok(Some(seen)) => seen,
        other => fail!(
            "the outer call on '{}' should have run: {:?}",
            outer.name(),
            other.map(|ran| ran.is_some())
        ),
    }
}

/// Inside a run holding `held`, waits for `asked` on the same name, and fails
/// the test unless that call is refused at once with
/// `LockError::ReentrantUpgrade` naming both modes, without running its body.
/// Returns the lock's state as `observer` saw it right after the refusal.
async fn refused_upgrade<P: LockProvider, O: LockAdmin>(
    executor: &LockingTaskExecutor<P>,
    observer: &O,
    held: &LockConfiguration,
    asked: &LockConfiguration,
) -> LockState {
    let body_ran = AtomicBool::new(false);
    let (nested, took, seen) = inside(executor, held, async {
        let started = Instant::now();
        let nested: Nested<()> = executor
            .execute_waiting(asked, Duration::from_secs(20), async {
                body_ran.store(true, Ordering::SeqCst);
            })
            .await;
        (
            nested,
            started.elapsed(),
            state(observer, held.name()).await,
        )
    })
    .await;
    let (held_mode, asked_mode) = (held.mode(), asked.mode());
    assert!(
        matches!(
            &nested,
            Err(LockError::ReentrantUpgrade { held, asked, .. })
                if *held == held_mode && *asked == asked_mode
        ),
        "expected ReentrantUpgrade from {held_mode:?} to {asked_mode:?}, got {nested:?}"
    );
    assert!(
        !body_ran.load(Ordering::SeqCst),
        "the {asked_mode:?} body ran on a {held_mode:?} hold"
    );
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
    seen
}

/// A shared holder calling a function locked exclusive on the same name gets
/// `LockError::ReentrantUpgrade` at once, even when that call would wait:
/// the exclusive lock would wait on the task's own shared hold. The nested
/// body never runs, and the store sees no second holder and no queued waiter.
pub async fn a_shared_holder_calling_for_the_exclusive_lock_is_refused_at_once<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, observer) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-upgrade");
    let reader = shared(&name, 1, None);
    let writer = config(&name, LONG, Duration::ZERO);
    let seen = refused_upgrade(&executor, &observer, &reader, &writer).await;
    assert_eq!(seen.holders.len(), 1, "a second holder: {seen:?}");
    assert_eq!(seen.exclusive_waiters, 0, "a queued waiter: {seen:?}");
    assert!(!state(&observer, &name).await.is_locked());
}

/// A holder of 1 permit calling a function that needs 3 on the same name gets
/// `LockError::ReentrantUpgrade` at once; the nested body never runs and no
/// more permits are taken.
pub async fn a_holder_of_fewer_permits_calling_for_more_is_refused_at_once<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, observer) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-more-permits");
    let (one, three) = (shared(&name, 1, Some(5)), shared(&name, 3, Some(5)));
    let seen = refused_upgrade(&executor, &observer, &one, &three).await;
    assert_eq!(seen.permits_held(), 1, "more permits were taken: {seen:?}");
}

/// A holder of 3 permits calling a function that needs 1 on the same name
/// runs it directly, on the permits it holds: the store sees no second holder.
pub async fn a_holder_of_more_permits_reenters_a_call_for_fewer<
    P: AdminProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, observer) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-fewer-permits");
    // At capacity: a second acquisition would be refused, not run.
    let (three, one) = (shared(&name, 3, Some(3)), shared(&name, 1, Some(3)));
    let nested = inside(
        &executor,
        &three,
        executor.execute(&one, state(&observer, &name)),
    )
    .await;
    match nested {
        Ok(Some(seen)) => {
            assert_eq!(seen.holders.len(), 1, "{seen:?}");
            assert_eq!(seen.permits_held(), 3, "{seen:?}");
        }
        other => fail!("the nested call should have run: {other:?}"),
    }
}

/// An exclusive holder calling a function locked shared (or counted) on the
/// same name runs it directly: exclusive covers every shared use. It does on
/// stores without shared locks too, as nothing more is asked of the store.
pub async fn an_exclusive_holder_reenters_a_shared_call<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let executor = LockingTaskExecutor::new(make().await);
    let name = unique_name("reentry-exclusive-shared");
    let writer = config(&name, LONG, Duration::ZERO);
    let reader = writer.clone().shared();
    let counted = writer
        .clone()
        .with_permits(3)
        .unwrap_or_else(|err| fail!("{err}"));
    // A second acquisition beside the exclusive holder would be refused, not run.
    let (as_reader, as_counted) = inside(&executor, &writer, async {
        (
            executor.execute(&reader, async {}).await,
            executor.execute(&counted, async {}).await,
        )
    })
    .await;
    for (kind, nested) in [("shared", as_reader), ("counted", as_counted)] {
        assert!(
            matches!(nested, Ok(Some(()))),
            "the {kind} call should have run inside the exclusive one: {nested:?}"
        );
    }
}

/// An exclusive holder calling a function locked exclusive on the same name
/// runs it directly, without a second acquisition (which would be refused).
pub async fn an_exclusive_holder_reenters_an_exclusive_call<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let executor = LockingTaskExecutor::new(make().await);
    let name = unique_name("reentry-exclusive");
    let job = config(&name, LONG, Duration::ZERO);
    let nested = inside(&executor, &job, executor.execute(&job, async {})).await;
    assert!(
        matches!(nested, Ok(Some(()))),
        "the nested call should have run: {nested:?}"
    );
}

/// A re-entered call whose `lock_at_most_for` ends later than the held lease
/// extends the lease to cover it: another node stays out while the nested
/// body runs past the outer call's lease. The lock is free after the outer call.
pub async fn a_reentered_call_extends_the_lease_to_its_lock_at_most_for<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, other) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-extends");
    let (short, long) = (
        config(&name, SHORT, Duration::ZERO),
        config(&name, LONG, Duration::ZERO),
    );
    let nested = inside(&executor, &short, async {
        executor
            .execute(&long, async {
                tokio::time::sleep(PAST_SHORT).await;
                assert_held(&other, &short).await;
            })
            .await
    })
    .await;
    assert!(
        matches!(nested, Ok(Some(()))),
        "the nested call should have run: {nested:?}"
    );
    unlock(acquire(&other, &short).await).await;
}

/// A re-entered call asking a shorter lease than the one held leaves the
/// held lease as it is.
pub async fn a_reentered_call_never_shortens_the_lease<P: LockProvider, Fut: Future<Output = P>>(
    make: impl Fn() -> Fut,
) {
    let (executor, other) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-never-shortens");
    let (long, short) = (
        config(&name, LONG, Duration::ZERO),
        config(&name, SHORT, Duration::ZERO),
    );
    let nested = inside(&executor, &long, async {
        let nested = executor.execute(&short, async {}).await;
        tokio::time::sleep(PAST_SHORT).await;
        assert_held(&other, &long).await;
        nested
    })
    .await;
    assert!(
        matches!(nested, Ok(Some(()))),
        "the nested call should have run: {nested:?}"
    );
}

/// A re-entered call's `lock_at_least_for` is kept: the lock stays held that
/// long after the nested call started, although the outer call asked for none.
pub async fn a_reentered_call_keeps_the_lock_its_lock_at_least_for<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, other) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-at-least");
    let outer = config(&name, LONG, Duration::ZERO);
    let kept = config(&name, LONG, Duration::from_millis(800));
    let nested = inside(&executor, &outer, executor.execute(&kept, async {})).await;
    assert!(
        matches!(nested, Ok(Some(()))),
        "the nested call should have run: {nested:?}"
    );
    assert_held(&other, &outer).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    unlock(acquire(&other, &outer).await).await;
}

/// A call re-entering a lock whose lease has ended (another node holds it
/// now) does not run: `LockError::LeaseLost`, and the other node's lock is
/// left alone.
pub async fn a_reentered_call_after_the_lease_ended_does_not_run<
    P: LockProvider,
    Fut: Future<Output = P>,
>(
    make: impl Fn() -> Fut,
) {
    let (executor, other) = (LockingTaskExecutor::new(make().await), make().await);
    let name = unique_name("reentry-lease-ended");
    let job = config(&name, SHORT, Duration::ZERO);
    let body_ran = AtomicBool::new(false);
    let (nested, next) = inside(&executor, &job, async {
        tokio::time::sleep(PAST_SHORT).await;
        let next = acquire(&other, &job).await;
        let nested: Nested<()> = executor
            .execute(&job, async {
                body_ran.store(true, Ordering::SeqCst);
            })
            .await;
        (nested, next)
    })
    .await;
    assert!(
        matches!(nested, Err(LockError::LeaseLost { .. })),
        "expected LeaseLost, got {nested:?}"
    );
    assert!(
        !body_ran.load(Ordering::SeqCst),
        "the nested body ran after its lease ended"
    );
    assert_held(executor.provider(), &job).await;
    unlock(next).await;
}

/// Generates one `#[tokio::test]` per lock-kinds conformance case (shared and
/// counted holders, capacity, pause, the operators' API, nested calls on a
/// held lock) for a provider that is also a
/// [`LockAdmin`](shedlock_core::LockAdmin).
/// Used like
/// [`provider_conformance_tests!`](crate::provider_conformance_tests).
#[macro_export]
macro_rules! lock_kinds_conformance_tests {
    ($make:expr) => {
        $crate::__test_cases!(kinds, $make;
            shared_holders_run_together,
            exclusive_and_shared_exclude_each_other,
            counted_permits_never_exceed_capacity,
            stored_capacity_wins,
            pause_refuses_everyone_until_resumed,
            pause_and_resume_an_ordinary_lock,
            pause_keeps_current_holders,
            waiting_job_starts_after_resume,
            raised_capacity_admits_a_waiter,
            exclusive_waiter_goes_before_new_shared_holders,
            shared_lease_ends_and_permits_return,
            stale_shared_holder_never_touches_the_next,
            lock_at_least_for_applies_per_shared_holder,
            lock_state_describes_holders,
            a_renewing_holder_shows_its_term_and_last_renewal,
            force_release_ends_every_lease,
            permits_never_exceed_capacity_under_contention,
            capacity_zero_pauses_and_resume_restores,
            lowered_capacity_keeps_holders_and_refuses_newcomers,
            extended_shared_holder_keeps_its_permits,
            a_waiter_that_gives_up_frees_its_place,
            tokens_increase_across_kinds,
            a_shared_holder_calling_for_the_exclusive_lock_is_refused_at_once,
            a_holder_of_fewer_permits_calling_for_more_is_refused_at_once,
            a_holder_of_more_permits_reenters_a_call_for_fewer,
            an_exclusive_holder_reenters_a_shared_call,
            an_exclusive_holder_reenters_an_exclusive_call,
            a_reentered_call_extends_the_lease_to_its_lock_at_most_for,
            a_reentered_call_never_shortens_the_lease,
            a_reentered_call_keeps_the_lock_its_lock_at_least_for,
            a_reentered_call_after_the_lease_ended_does_not_run,
        );
    };
}
