//! Leader leases on the in-memory provider: the shared cases, and the
//! election's configuration checks.

use std::time::Duration;

use shedlock_core::{InMemoryLockProvider, LeaderElection, LockAdmin, LockError};
use shedlock_test_support::leader;

static MEMORY: std::sync::LazyLock<InMemoryLockProvider> =
    std::sync::LazyLock::new(InMemoryLockProvider::new);

async fn provider() -> InMemoryLockProvider {
    MEMORY.clone()
}

shedlock_test_support::leader_conformance_tests!(provider);

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops() {
    leader::a_leader_that_loses_its_lease_stops(provider, |name| async move {
        assert_eq!(MEMORY.force_release(&name).await.unwrap(), 1);
    })
    .await;
}

#[test]
fn timings_are_checked_as_client_go_does() {
    let memory = InMemoryLockProvider::new;
    let lease = Duration::from_secs(15);
    assert!(LeaderElection::new(memory(), "defaults", lease).is_ok());
    let refused = [
        LeaderElection::new(memory(), "deadline", lease)
            .and_then(|election| election.with_renew_deadline(lease)),
        LeaderElection::new(memory(), "period", lease)
            .and_then(|election| election.with_retry_period(Duration::from_secs(9))),
        LeaderElection::new(memory(), "zero", lease)
            .and_then(|election| election.with_retry_period(Duration::ZERO)),
        LeaderElection::new(memory(), "", lease),
    ];
    for election in refused {
        assert!(
            matches!(election, Err(LockError::InvalidConfiguration(_))),
            "{election:?}"
        );
    }
}

#[tokio::test]
async fn an_observer_sees_each_new_leader() {
    leader::an_observer_sees_each_new_leader(provider).await;
}
