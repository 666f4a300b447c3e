//! One holder at a time: taking and releasing, lease bounds, extensions,
//! leases that end under a holder, dropped guards and fencing tokens.

use std::time::Duration;

use shedlock_core::{LockConfiguration, LockGuard, LockProvider};

use super::{
    LONG, Make, PAST_SHORT, SHORT, acquire, assert_held, config, config_named, extend, token_of,
    unique_name, unlock,
};

/// Two providers, a new lock of `case` with these lease bounds, and the
/// first provider's guard on it (the caller keeps the first provider alive
/// while the guard lives).
async fn first_holds<P: LockProvider>(
    make: &impl Make<P>,
    case: &str,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
) -> (P, P, LockConfiguration, LockGuard) {
    let (first, second) = make.two().await;
    let config = config(&unique_name(case), lock_at_most_for, lock_at_least_for);
    let guard = acquire(&first, &config).await;
    (first, second, config, guard)
}

/// Fails the test unless extending the held lease succeeds.
async fn assert_extends(guard: &mut LockGuard, lock_at_most_for: Duration) {
    assert!(
        extend(guard, lock_at_most_for).await,
        "extending a held lease must succeed"
    );
}

/// Fails the test unless extending a lease that ended returns `false`.
async fn assert_stale_extension_refused(stale: &mut LockGuard) {
    assert!(
        !extend(stale, LONG).await,
        "a stale extension must return false"
    );
}

/// A lock can be taken and released, and is free again afterwards.
pub async fn lock_and_unlock<P: LockProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let config = config_named(&unique_name("lock-unlock"));
    let guard = acquire(&provider, &config).await;
    assert_eq!(guard.name(), config.name());
    unlock(guard).await;
    unlock(acquire(&provider, &config).await).await;
}

/// While one holder has a lock, a second attempt (another connection) gets `None`.
pub async fn second_lock_refused_while_held<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("refused"));
    let guard = acquire(&first, &config).await;
    assert_held(&second, &config).await;
    assert_held(&first, &config).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// Locks of different names do not exclude each other.
pub async fn two_names_are_independent<P: LockProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let a = config_named(&unique_name("independent-a"));
    let b = config_named(&unique_name("independent-b"));
    let guard_a = acquire(&provider, &a).await;
    let guard_b = acquire(&provider, &b).await;
    unlock(guard_a).await;
    assert_held(&provider, &b).await;
    unlock(guard_b).await;
}

/// Taking a held lock twice from the same provider is refused the second time.
pub async fn lock_twice_in_a_row<P: LockProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let config = config_named(&unique_name("twice"));
    let guard = acquire(&provider, &config).await;
    assert!(
        matches!(provider.try_lock(&config).await, Ok(None)),
        "a second try_lock on a held lock must return Ok(None)"
    );
    unlock(guard).await;
}

/// A lease ends `lock_at_most_for` after acquisition even if never released.
pub async fn lease_ends_after_lock_at_most_for<P: LockProvider>(make: impl Make<P>) {
    let (_first, second, config, abandoned) =
        first_holds(&make, "lease-ends", SHORT, Duration::ZERO).await;
    assert_held(&second, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    std::mem::forget(abandoned); // a crashed holder never releases
    unlock(next).await;
}

/// Lock, unlock, lock again: ten times in a row, with no gap.
pub async fn lock_right_after_unlock<P: LockProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let config = config_named(&unique_name("relock"));
    for _ in 0..10 {
        unlock(acquire(&provider, &config).await).await;
    }
}

/// `unlock` before `lock_at_least_for` keeps the lock until then, and frees it after.
pub async fn lock_at_least_for_keeps_lock_after_unlock<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config(&unique_name("at-least"), LONG, Duration::from_millis(800));
    unlock(acquire(&first, &config).await).await;
    assert_held(&second, &config).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    unlock(acquire(&second, &config).await).await;
}

/// `unlock` after `lock_at_least_for` has passed frees the lock at once.
pub async fn unlock_after_lock_at_least_for_frees_at_once<P: LockProvider>(make: impl Make<P>) {
    let (_first, second, config, guard) =
        first_holds(&make, "at-least-passed", LONG, Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// An extension keeps the lease past its original end.
pub async fn extend_keeps_the_lease<P: LockProvider>(make: impl Make<P>) {
    let (_first, second, config, mut guard) =
        first_holds(&make, "extend", SHORT, Duration::ZERO).await;
    assert_extends(&mut guard, LONG).await;
    tokio::time::sleep(PAST_SHORT).await;
    assert_held(&second, &config).await;
    unlock(guard).await;
    unlock(acquire(&second, &config).await).await;
}

/// Several extensions in a row keep the lease each time.
pub async fn extend_several_times<P: LockProvider>(make: impl Make<P>) {
    let (_first, second, config, mut guard) =
        first_holds(&make, "extend-many", SHORT, Duration::ZERO).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_extends(&mut guard, SHORT).await;
    }
    // 600 ms have passed: without the extensions the 300 ms lease would have ended.
    assert_held(&second, &config).await;
    unlock(guard).await;
}

/// Extending a lease that ended (and was taken by someone else) returns
/// `false` and leaves the next holder's lock alone.
pub async fn extend_after_lease_ended_never_touches_next_holder<P: LockProvider>(
    make: impl Make<P>,
) {
    let (first, second, third) = make.three().await;
    let config = config(&unique_name("extend-stale"), SHORT, Duration::ZERO);
    let mut stale = acquire(&first, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    assert_stale_extension_refused(&mut stale).await;
    // The next holder's 300 ms lease was not stretched to LONG by the stale guard.
    assert_held(&third, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&third, &config).await).await;
    drop(next);
    drop(stale);
}

/// Extending after the lease ended and the next holder unlocked returns
/// `false` and does not take the lock back.
pub async fn extend_after_unlock_returns_false<P: LockProvider>(make: impl Make<P>) {
    let (_first, second, config, mut stale) =
        first_holds(&make, "extend-unlocked", SHORT, Duration::ZERO).await;
    tokio::time::sleep(PAST_SHORT).await;
    unlock(acquire(&second, &config).await).await;
    assert_stale_extension_refused(&mut stale).await;
    unlock(acquire(&second, &config).await).await;
    unlock(stale).await;
}

/// Unlocking a lease that ended never frees the next holder's lock.
pub async fn unlock_after_lease_ended_never_frees_next_holder<P: LockProvider>(make: impl Make<P>) {
    let (first, second, third) = make.three().await;
    let config = config(&unique_name("unlock-stale"), SHORT, Duration::ZERO);
    let stale = acquire(&first, &config).await;
    tokio::time::sleep(PAST_SHORT).await;
    let next = acquire(&second, &config).await;
    unlock(stale).await;
    assert_held(&third, &config).await;
    unlock(next).await;
    unlock(acquire(&third, &config).await).await;
}

/// A dropped guard is released in the background.
pub async fn dropped_guard_is_released<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("dropped"));
    drop(acquire(&first, &config).await);
    for _ in 0..100 {
        if let Ok(Some(guard)) = second.try_lock(&config).await {
            unlock(guard).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fail!("a dropped guard was not released within 2 s");
}

/// Fencing tokens of one name strictly increase across holders and connections.
pub async fn fencing_tokens_strictly_increase<P: LockProvider>(make: impl Make<P>) {
    let (first, second) = make.two().await;
    let config = config_named(&unique_name("fencing"));
    let other = config_named(&unique_name("fencing-other"));
    let mut last = 0;
    for round in 0..10 {
        let provider = if round % 2 == 0 { &first } else { &second };
        // Interleave another name: tokens of a name must still grow.
        unlock(acquire(provider, &other).await).await;
        let guard = acquire(provider, &config).await;
        assert!(
            token_of(&guard).await > last,
            "token {} after token {last}: fencing tokens must strictly increase",
            token_of(&guard).await
        );
        last = token_of(&guard).await;
        unlock(guard).await;
    }
}
