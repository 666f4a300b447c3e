//! Conformance cases for lock kinds: shared and counted holders, exclusive
//! holders beside them, capacity, pause and resume, the operators' API, and
//! nested calls on a held lock (reentrancy covers only what the task holds).
//! Run with [`lock_kinds_conformance_tests!`](crate::lock_kinds_conformance_tests)
//! by providers that are also a [`LockAdmin`].

use std::future::Future;

use shedlock_core::{LockAdmin, LockConfiguration, LockError, LockProvider, LockState};

use crate::conformance::config_named;

mod admin;
mod holders;
mod reentrancy;

pub use admin::*;
pub use holders::*;
pub use reentrancy::*;

/// A provider the kinds suite can run against.
pub trait AdminProvider: LockProvider + LockAdmin {}
impl<P: LockProvider + LockAdmin> AdminProvider for P {}

/// `name` shared by holders of `permits` each, with a long lease.
fn shared(name: &str, permits: u32, capacity: Option<u32>) -> LockConfiguration {
    with_kind(config_named(name), permits, capacity)
}

/// `config` shared by holders of `permits` each, up to `capacity`.
fn with_kind(config: LockConfiguration, permits: u32, capacity: Option<u32>) -> LockConfiguration {
    let config = config
        .with_permits(permits)
        .unwrap_or_else(|err| fail!("test configuration rejected: {err}"));
    match capacity {
        Some(capacity) => config
            .with_capacity(capacity)
            .unwrap_or_else(|err| fail!("test capacity rejected: {err}")),
        None => config,
    }
}

/// The state of the lock `name`; a test failure when it cannot be read.
pub async fn state<P: LockAdmin>(provider: &P, name: &str) -> LockState {
    provider
        .lock_state(name)
        .await
        .unwrap_or_else(|err| fail!("reading the state of '{name}' failed: {err}"))
}

/// Fails the test unless `operator`'s list of locks has `name`, held.
pub async fn assert_listed_as_held<P: LockAdmin>(operator: &P, name: &str) {
    let listed = admin("list_locks", operator.list_locks()).await;
    assert!(
        listed
            .iter()
            .any(|lock| lock.name == name && lock.is_locked()),
        "'{name}' is not listed as held: {listed:?}"
    );
}

/// The result of the operators' call `what`; a test failure when it failed.
pub async fn admin<T>(what: &str, result: impl Future<Output = Result<T, LockError>>) -> T {
    result
        .await
        .unwrap_or_else(|err| fail!("{what} failed: {err}"))
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
