//! Nested calls on a lock the task holds, on the in-memory provider: they run
//! directly only when the hold covers what they ask, and are refused at once,
//! without asking the store, when it does not. (The lock-kinds conformance
//! suite checks the same rule on every provider.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{
    InMemoryLockProvider, LockConfiguration, LockError, LockMode, LockProvider,
    LockingTaskExecutor, is_lease_lost,
};
use shedlock_test_support::attempts::AttemptsRecorded;

const LEASE: Duration = Duration::from_secs(30);

fn exclusive(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, LEASE, Duration::ZERO).unwrap()
}

fn permits(name: &str, permits: u32) -> LockConfiguration {
    exclusive(name).with_permits(permits).unwrap()
}

/// The in-memory provider, counting every acquisition asked of it.
type Counted = AttemptsRecorded<InMemoryLockProvider>;

/// Runs `outer`, and inside it a waiting call on `nested`; what the nested
/// call returned, how long it took, and whether its body ran.
async fn nest(
    executor: &LockingTaskExecutor<Counted>,
    outer: &LockConfiguration,
    nested: &LockConfiguration,
) -> (Result<Option<()>, LockError>, Duration, bool) {
    let ran = Arc::new(AtomicUsize::new(0));
    let body = ran.clone();
    let (result, took) = executor
        .execute(outer, async {
            let started = Instant::now();
            let result = executor
                .execute_waiting(nested, Duration::from_secs(20), async move {
                    body.fetch_add(1, Ordering::SeqCst);
                })
                .await;
            (result, started.elapsed())
        })
        .await
        .unwrap()
        .expect("the outer call runs");
    (result, took, ran.load(Ordering::SeqCst) > 0)
}

#[tokio::test]
async fn a_shared_holder_calling_for_the_exclusive_lock_is_refused_without_asking_the_store() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let catalog = exclusive("catalog");
    let (result, took, ran) = nest(&executor, &catalog.clone().shared(), &catalog).await;
    assert!(
        matches!(result, Err(LockError::ReentrantUpgrade { .. })),
        "{result:?}"
    );
    assert!(!ran, "the exclusive body ran beside the task's shared hold");
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    assert_eq!(provider.attempts(), 1, "the nested call asked the store");
    assert!(!provider.provider().is_locked("catalog"));
}

#[tokio::test]
async fn a_holder_of_one_permit_calling_for_three_is_refused_without_asking_the_store() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let (result, took, ran) = nest(&executor, &permits("exports", 1), &permits("exports", 3)).await;
    match result {
        Err(LockError::ReentrantUpgrade { name, held, asked }) => {
            assert_eq!(name, "exports");
            assert_eq!(held, LockMode::Shared { permits: 1 });
            assert_eq!(asked, LockMode::Shared { permits: 3 });
        }
        other => panic!("expected ReentrantUpgrade, got {other:?}"),
    }
    assert!(!ran, "the 3-permit body ran on 1 permit");
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    assert_eq!(provider.attempts(), 1, "the nested call asked the store");
}

#[tokio::test]
async fn covered_nested_calls_run_without_asking_the_store() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let cases = [
        (exclusive("a"), exclusive("a")),
        (exclusive("b"), exclusive("b").shared()),
        (exclusive("c"), permits("c", 7)),
        (permits("d", 3), permits("d", 1)),
        (permits("e", 3), permits("e", 3)),
    ];
    for (attempts, (outer, nested)) in cases.iter().enumerate() {
        let (result, _, ran) = nest(&executor, outer, nested).await;
        let (held, asked) = (outer.mode(), nested.mode());
        assert!(
            matches!(result, Ok(Some(()))) && ran,
            "{asked:?} inside {held:?}: {result:?}"
        );
        assert_eq!(
            provider.attempts(),
            attempts + 1,
            "{asked:?} inside {held:?}"
        );
    }
}

#[tokio::test]
async fn the_refusal_says_what_is_held_what_was_asked_and_what_to_do() {
    let executor = LockingTaskExecutor::new(Counted::default());
    let catalog = exclusive("catalog");
    let (result, _, _) = nest(&executor, &catalog.clone().shared(), &catalog).await;
    let message = result.unwrap_err().to_string();
    for part in [
        "'catalog'",
        "shared with 1 permit",
        "exclusively",
        "wait on itself",
        "did not run",
        "lock the outer call exclusively",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    let (result, _, _) = nest(&executor, &permits("exports", 1), &permits("exports", 3)).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("lock the outer call shared with 3 permits"),
        "{message}"
    );
}

#[tokio::test]
async fn coverage_is_judged_on_the_held_lock_however_deep_in_the_nesting() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let (a, b) = (exclusive("a"), exclusive("b"));
    let seen = executor
        .execute(a.clone().shared(), async {
            executor
                .execute(&b, async { executor.execute(&a, async {}).await })
                .await
        })
        .await
        .unwrap();
    assert!(
        matches!(
            seen,
            Some(Ok(Some(Err(LockError::ReentrantUpgrade { .. }))))
        ),
        "{seen:?}"
    );
    let seen = executor
        .execute(&a, async {
            executor
                .execute(&b, async {
                    executor.execute(a.clone().shared(), async {}).await
                })
                .await
        })
        .await
        .unwrap();
    assert!(matches!(seen, Some(Ok(Some(Ok(Some(())))))), "{seen:?}");
}

#[tokio::test]
async fn a_refused_nested_call_leaves_the_outer_hold_as_it_was() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let other = provider.provider().clone();
    let catalog = exclusive("catalog");
    let outer = executor
        .execute(catalog.clone().shared(), async {
            let refused = executor.execute(&catalog, async {}).await;
            // Still held shared: other readers join, writers stay out.
            let reader = other.try_lock(&catalog.clone().shared()).await.unwrap();
            let writer = other.try_lock(&catalog).await.unwrap();
            (
                refused.is_err(),
                reader.is_some(),
                writer.is_some(),
                is_lease_lost(),
            )
        })
        .await
        .unwrap();
    assert_eq!(outer, Some((true, true, false, false)));
}

#[tokio::test]
async fn a_nested_call_that_finds_the_lease_ended_marks_it_lost() {
    let provider = Counted::default();
    let executor = LockingTaskExecutor::new(provider.clone());
    let short =
        LockConfiguration::new("short", Duration::from_millis(200), Duration::ZERO).unwrap();
    let seen = executor
        .execute(&short, async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let nested = executor.execute(&short, async {}).await;
            (nested, is_lease_lost())
        })
        .await
        .unwrap();
    match seen {
        Some((Err(LockError::LeaseLost { name }), true)) => assert_eq!(name, "short"),
        other => panic!("expected LeaseLost and a lost lease, got {other:?}"),
    }
}
