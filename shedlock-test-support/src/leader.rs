//! Leader-lease cases every provider passes: one leader at a time, hand-over
//! when the leader steps down, terms that rise, and a leader whose lease is
//! taken from it stops before the next one starts.

use crate::conformance::assert_lease_lost;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{LeaderElection, LockProvider};

/// Three candidates on one name, each leading for 100 ms in turn: never two
/// leaders at once, every one leads, and terms rise with each new leader.
pub async fn one_leader_at_a_time_and_terms_rise<P, Fut>(make: impl Fn() -> Fut)
where
    P: LockProvider + Clone,
    Fut: Future<Output = P>,
{
    let name = crate::conformance::unique_name("leader");
    let leading = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicBool::new(false));
    let mut candidates = tokio::task::JoinSet::new();
    for candidate in 0..3 {
        let election = LeaderElection::new(make().await, name.clone(), Duration::from_secs(3))
            .and_then(|election| election.with_retry_period(Duration::from_millis(20)))
            .unwrap_or_else(|err| fail!("cannot configure the election: {err}"))
            .with_identity(format!("candidate-{candidate}"));
        let (leading, overlaps) = (leading.clone(), overlaps.clone());
        candidates.spawn(async move {
            election
                .run(|leadership| async move {
                    if leading.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    leading.fetch_sub(1, Ordering::SeqCst);
                    (leadership.term(), Instant::now())
                })
                .await
        });
    }
    let mut terms = Vec::new();
    while let Some(joined) = candidates.join_next().await {
        match joined {
            Ok(Ok(term)) => terms.push(term),
            Ok(Err(err)) => fail!("a candidate failed: {err}"),
            Err(err) => fail!("a candidate panicked: {err}"),
        }
    }
    assert!(!overlaps.load(Ordering::SeqCst), "two leaders at once");
    terms.sort_by_key(|(_, ended)| *ended);
    for pair in terms.windows(2) {
        assert!(
            pair[1].0 > pair[0].0,
            "a later leader's term is not above the earlier one's: {terms:?}"
        );
    }
}

/// The next candidate leads soon after the leader steps down (not at the
/// lease's end): stepping down releases the lease at once.
pub async fn stepping_down_hands_over_at_once<P, Fut>(make: impl Fn() -> Fut)
where
    P: LockProvider + Clone,
    Fut: Future<Output = P>,
{
    let name = crate::conformance::unique_name("leader-handover");
    let lease = Duration::from_secs(20);
    let first = LeaderElection::new(make().await, name.clone(), lease)
        .unwrap_or_else(|err| fail!("cannot configure the election: {err}"));
    let second = LeaderElection::new(make().await, name, lease)
        .and_then(|election| election.with_retry_period(Duration::from_millis(20)))
        .unwrap_or_else(|err| fail!("cannot configure the election: {err}"));
    let stepped_down = first
        .run(|_| async { Instant::now() })
        .await
        .unwrap_or_else(|err| fail!("the first candidate failed: {err}"));
    let took_over = second
        .run(|_| async { Instant::now() })
        .await
        .unwrap_or_else(|err| fail!("the second candidate failed: {err}"));
    assert!(
        took_over.duration_since(stepped_down) < lease / 4,
        "the hand-over took {:?}: the lease was not given up",
        took_over.duration_since(stepped_down)
    );
}

/// A leader whose lease is taken from it (`take` ends it on the store, as
/// `shedlock unlock --force` does) has its closure dropped at its next
/// renewal and returns `LeaseLost`.
pub async fn a_leader_that_loses_its_lease_stops<P, Fut, Take, TakeFut>(
    make: impl Fn() -> Fut,
    take: Take,
) where
    P: LockProvider + Clone,
    Fut: Future<Output = P>,
    Take: FnOnce(String) -> TakeFut,
    TakeFut: Future<Output = ()>,
{
    let name = crate::conformance::unique_name("leader-loss");
    let election = LeaderElection::new(make().await, name.clone(), Duration::from_millis(1_500))
        .and_then(|election| election.with_retry_period(Duration::from_millis(50)))
        .unwrap_or_else(|err| fail!("cannot configure the election: {err}"));
    let finished = Arc::new(AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Notify::new());
    let leading = {
        let (finished, started) = (finished.clone(), started.clone());
        election.run(|leadership| async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_secs(30)).await;
            finished.store(true, Ordering::SeqCst);
            leadership.term()
        })
    };
    let taking = async {
        started.notified().await;
        take(name).await;
    };
    let (outcome, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(leading, taking)
    })
    .await
    .unwrap_or_else(|_| fail!("the leader went on after its lease was taken"));
    assert_lease_lost(&outcome);
    assert!(!finished.load(Ordering::SeqCst), "the closure ran on");
    assert!(!election.is_leader());
}

/// An observer sees each new leader with its term, this process's or
/// another's, and sees nobody lead once the leader has stepped down.
pub async fn an_observer_sees_each_new_leader<P, Fut>(make: impl Fn() -> Fut)
where
    P: LockProvider + shedlock_core::LockAdmin + Clone,
    Fut: Future<Output = P>,
{
    let name = crate::conformance::unique_name("leader-observed");
    let lease = Duration::from_secs(5);
    let watcher = LeaderElection::new(make().await, name.clone(), lease)
        .and_then(|election| election.with_retry_period(Duration::from_millis(20)))
        .unwrap_or_else(|err| fail!("cannot configure the election: {err}"));
    let mut observed = watcher.observe().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let election = LeaderElection::new(make().await, name.clone(), lease)
            .unwrap_or_else(|err| fail!("cannot configure the election: {err}"));
        let watching = async {
            loop {
                if observed.changed().await.is_err() {
                    fail!("the observer stopped");
                }
                let leader = observed.borrow_and_update().clone();
                if let Some(leader) = leader {
                    return leader;
                }
            }
        };
        let (leader, term) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(5), watching),
            election.run(|leadership| async move {
                // Lead long enough for the observer's next read.
                tokio::time::sleep(Duration::from_millis(200)).await;
                leadership.term()
            })
        );
        let leader = leader.unwrap_or_else(|_| fail!("the observer never saw the leader"));
        let term = term.unwrap_or_else(|err| fail!("the leader failed: {err}"));
        if let Some(seen_term) = leader.term {
            assert_eq!(seen_term, term, "the observer saw another term: {leader:?}");
        }
        seen.push(leader);
        // After stepping down, nobody leads.
        tokio::time::timeout(Duration::from_secs(5), async {
            while observed.borrow().is_some() {
                if observed.changed().await.is_err() {
                    fail!("the observer stopped");
                }
            }
        })
        .await
        .unwrap_or_else(|_| fail!("the observer never saw the leader step down"));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// The leader-lease cases that need only a provider, as `#[tokio::test]`s:
/// `shedlock_test_support::leader_conformance_tests!(make_provider);`
#[macro_export]
macro_rules! leader_conformance_tests {
    ($make:expr) => {
        $crate::__test_cases!(leader, $make; one_leader_at_a_time_and_terms_rise, stepping_down_hands_over_at_once);
    };
}
