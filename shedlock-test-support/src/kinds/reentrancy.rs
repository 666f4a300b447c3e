//! Nested calls on a held lock: what re-enters directly, what is refused at
//! once, and how a re-entered call's lease bounds apply (reentrancy covers
//! only what the task holds).

use crate::conformance::assert_lease_lost;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{
    LockAdmin, LockConfiguration, LockError, LockProvider, LockState, LockingTaskExecutor,
};

use super::{AdminProvider, shared, state};
use crate::conformance::{
    LONG, Make, PAST_SHORT, SHORT, acquire, assert_held, config, config_named, unique_name, unlock,
};

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

/// Fails the test unless the nested call ran.
fn assert_ran(nested: &Nested<()>) {
    assert!(
        matches!(nested, Ok(Some(()))),
        "the nested call should have run: {nested:?}"
    );
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
pub async fn a_shared_holder_calling_for_the_exclusive_lock_is_refused_at_once<P: AdminProvider>(
    make: impl Make<P>,
) {
    let (executor, observer) = make.executor_and_other().await;
    let name = unique_name("reentry-upgrade");
    let reader = shared(&name, 1, None);
    let writer = config_named(&name);
    let seen = refused_upgrade(&executor, &observer, &reader, &writer).await;
    assert_eq!(seen.holders.len(), 1, "a second holder: {seen:?}");
    assert_eq!(seen.exclusive_waiters, 0, "a queued waiter: {seen:?}");
    assert!(!state(&observer, &name).await.is_locked());
}

/// A holder of 1 permit calling a function that needs 3 on the same name gets
/// `LockError::ReentrantUpgrade` at once; the nested body never runs and no
/// more permits are taken.
pub async fn a_holder_of_fewer_permits_calling_for_more_is_refused_at_once<P: AdminProvider>(
    make: impl Make<P>,
) {
    let (executor, observer) = make.executor_and_other().await;
    let name = unique_name("reentry-more-permits");
    let (one, three) = (shared(&name, 1, Some(5)), shared(&name, 3, Some(5)));
    let seen = refused_upgrade(&executor, &observer, &one, &three).await;
    assert_eq!(seen.permits_held(), 1, "more permits were taken: {seen:?}");
}

/// A holder of 3 permits calling a function that needs 1 on the same name
/// runs it directly, on the permits it holds: the store sees no second holder.
pub async fn a_holder_of_more_permits_reenters_a_call_for_fewer<P: AdminProvider>(
    make: impl Make<P>,
) {
    let (executor, observer) = make.executor_and_other().await;
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
pub async fn an_exclusive_holder_reenters_a_shared_call<P: LockProvider>(make: impl Make<P>) {
    let executor = make.executor().await;
    let name = unique_name("reentry-exclusive-shared");
    let writer = config_named(&name);
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
pub async fn an_exclusive_holder_reenters_an_exclusive_call<P: LockProvider>(make: impl Make<P>) {
    let executor = make.executor().await;
    let name = unique_name("reentry-exclusive");
    let job = config_named(&name);
    let nested = inside(&executor, &job, executor.execute(&job, async {})).await;
    assert_ran(&nested);
}

/// A re-entered call whose `lock_at_most_for` ends later than the held lease
/// extends the lease to cover it: another node stays out while the nested
/// body runs past the outer call's lease. The lock is free after the outer call.
pub async fn a_reentered_call_extends_the_lease_to_its_lock_at_most_for<P: LockProvider>(
    make: impl Make<P>,
) {
    let (executor, other) = make.executor_and_other().await;
    let name = unique_name("reentry-extends");
    let (short, long) = (config(&name, SHORT, Duration::ZERO), config_named(&name));
    let nested = inside(&executor, &short, async {
        executor
            .execute(&long, async {
                tokio::time::sleep(PAST_SHORT).await;
                assert_held(&other, &short).await;
            })
            .await
    })
    .await;
    assert_ran(&nested);
    unlock(acquire(&other, &short).await).await;
}

/// A re-entered call asking a shorter lease than the one held leaves the
/// held lease as it is.
pub async fn a_reentered_call_never_shortens_the_lease<P: LockProvider>(make: impl Make<P>) {
    let (executor, other) = make.executor_and_other().await;
    let name = unique_name("reentry-never-shortens");
    let (long, short) = (config_named(&name), config(&name, SHORT, Duration::ZERO));
    let nested = inside(&executor, &long, async {
        let nested = executor.execute(&short, async {}).await;
        tokio::time::sleep(PAST_SHORT).await;
        assert_held(&other, &long).await;
        nested
    })
    .await;
    assert_ran(&nested);
}

/// A re-entered call's `lock_at_least_for` is kept: the lock stays held that
/// long after the nested call started, although the outer call asked for none.
pub async fn a_reentered_call_keeps_the_lock_its_lock_at_least_for<P: LockProvider>(
    make: impl Make<P>,
) {
    let (executor, other) = make.executor_and_other().await;
    let name = unique_name("reentry-at-least");
    let outer = config_named(&name);
    let kept = config(&name, LONG, Duration::from_millis(800));
    let nested = inside(&executor, &outer, executor.execute(&kept, async {})).await;
    assert_ran(&nested);
    assert_held(&other, &outer).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    unlock(acquire(&other, &outer).await).await;
}

/// A call re-entering a lock whose lease has ended (another node holds it
/// now) does not run: `LockError::LeaseLost`, and the other node's lock is
/// left alone.
pub async fn a_reentered_call_after_the_lease_ended_does_not_run<P: LockProvider>(
    make: impl Make<P>,
) {
    let (executor, other) = make.executor_and_other().await;
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
    assert_lease_lost(&nested);
    assert!(
        !body_ran.load(Ordering::SeqCst),
        "the nested body ran after its lease ended"
    );
    assert_held(executor.provider(), &job).await;
    unlock(next).await;
}
