//! The operators' API on lock kinds: stored capacity, pause and resume, the
//! state of a lock and its holders, and force-release.

use std::time::Duration;

use shedlock_core::LockMode;

use super::{AdminProvider, admin, assert_listed_as_held, shared, state};
use crate::conformance::{
    LONG, Make, WaitingJob, acquire, assert_held, config_named, extend, unique_name, unlock,
};

/// A capacity stored by an operator wins over the acquisition's default.
pub async fn stored_capacity_wins<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
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
pub async fn pause_refuses_everyone_until_resumed<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("pause");
    admin("set_capacity", a.set_capacity(&name, 3)).await;
    admin("pause", a.pause(&name)).await;
    admin("pause twice", a.pause(&name)).await;
    let seen = state(&b, &name).await;
    assert!(seen.paused, "{seen:?}");
    assert_eq!(seen.capacity, Some(0));
    assert_held(&b, &config_named(&name)).await;
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
pub async fn pause_and_resume_an_ordinary_lock<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("pause-ordinary");
    let job = config_named(&name);
    admin("pause", a.pause(&name)).await;
    assert_held(&b, &job).await;
    admin("resume", a.resume(&name)).await;
    assert_eq!(state(&a, &name).await.capacity, None);
    unlock(acquire(&b, &job).await).await;
}

/// Pausing does not end current leases: holders finish their runs.
pub async fn pause_keeps_current_holders<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("pause-holders");
    let mut guard = acquire(&a, &config_named(&name)).await;
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
pub async fn waiting_job_starts_after_resume<P: AdminProvider>(make: impl Make<P>) {
    let (waiter, operator) = make.executor_and_other().await;
    let name = unique_name("resume-wakes");
    admin("pause", operator.pause(&name)).await;
    // Not before the resume: not while paused.
    let resume = admin("resume", operator.resume(&name));
    WaitingJob::spawn(waiter, config_named(&name))
        .let_in("the resume", Duration::from_secs(5), resume)
        .await;
}

/// Raising the capacity lets a waiting shared job in.
pub async fn raised_capacity_admits_a_waiter<P: AdminProvider>(make: impl Make<P>) {
    let (waiter, holder) = make.executor_and_other().await;
    let name = unique_name("raise-capacity");
    let job = shared(&name, 1, Some(1));
    let guard = acquire(&holder, &job).await;
    let raise = admin("set_capacity", holder.set_capacity(&name, 2));
    WaitingJob::spawn(waiter, job)
        .let_in("the new capacity", Duration::from_secs(5), raise)
        .await;
    unlock(guard).await;
}

/// The state shows each holder: who, since when, how long it has left, its permits.
pub async fn lock_state_describes_holders<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
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
    let exclusive = acquire(&a, &config_named(&name)).await;
    let seen = state(&b, &name).await;
    assert_eq!(seen.holders.len(), 1);
    assert_eq!(seen.holders[0].mode, LockMode::Exclusive);
    assert_listed_as_held(&b, &name).await;
    unlock(exclusive).await;
}

/// A holder that renews its lease (a leader, a scope's owner) shows its
/// term and how long ago it last renewed, by the store's clock; the next
/// holder of the name never shows the previous holder's renewals.
pub async fn a_renewing_holder_shows_its_term_and_last_renewal<P: AdminProvider>(
    make: impl Make<P>,
) {
    let (a, b) = make.two().await;
    let name = unique_name("renewed");
    let exclusive = config_named(&name);
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
pub async fn force_release_ends_every_lease<P: AdminProvider>(make: impl Make<P>) {
    let (a, b) = make.two().await;
    let name = unique_name("force");
    let mut first = acquire(&a, &shared(&name, 1, None)).await;
    let second = acquire(&a, &shared(&name, 1, None)).await;
    let released = admin("force_release", b.force_release(&name)).await;
    assert_eq!(released, 2);
    let next = acquire(&b, &config_named(&name)).await;
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

/// `set_capacity(0)` pauses like `pause`: resume brings the capacity back.
pub async fn capacity_zero_pauses_and_resume_restores<P: AdminProvider>(make: impl Make<P>) {
    let provider = make.one().await;
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
pub async fn lowered_capacity_keeps_holders_and_refuses_newcomers<P: AdminProvider>(
    make: impl Make<P>,
) {
    let (a, b) = make.two().await;
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
