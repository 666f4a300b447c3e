//! `#[scheduler_lock]` functions calling each other on one lock name: the
//! nested call runs on the caller's hold only when that hold covers it.

use std::sync::LazyLock;

use shedlock::{InMemoryLockProvider, LockError, LockMode, scheduler_lock};

static LOCKS: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "shared", provider = &*LOCKS)]
async fn export_catalog() -> Result<Option<()>, LockError> {
    rebuild_catalog().await
}

#[scheduler_lock(name = "catalog", lock_at_most_for = "1m", mode = "exclusive", provider = &*LOCKS)]
async fn rebuild_catalog() {
    panic!("the exclusive body ran inside a shared hold");
}

#[tokio::test]
async fn a_shared_job_calling_an_exclusive_one_gets_an_error_and_the_exclusive_body_never_runs() {
    let nested = export_catalog().await;
    match nested {
        Ok(Some(Err(LockError::ReentrantUpgrade { name, held, asked }))) => {
            assert_eq!(name, "catalog");
            assert_eq!(held, LockMode::Shared { permits: 1 });
            assert_eq!(asked, LockMode::Exclusive);
        }
        other => panic!("expected ReentrantUpgrade from the nested call, got {other:?}"),
    }
    assert!(!LOCKS.is_locked("catalog"));
}

#[scheduler_lock(name = "exports", lock_at_most_for = "1m", permits = 1, capacity = 9, provider = &*LOCKS)]
async fn small_export() -> Result<Option<u8>, LockError> {
    big_export().await
}

#[scheduler_lock(name = "exports", lock_at_most_for = "1m", permits = 3, capacity = 9, provider = &*LOCKS)]
async fn big_export() -> u8 {
    3
}

#[tokio::test]
async fn a_job_holding_one_permit_calling_one_that_needs_three_gets_an_error() {
    let nested = small_export().await;
    assert!(
        matches!(nested, Ok(Some(Err(LockError::ReentrantUpgrade { .. })))),
        "{nested:?}"
    );
}

#[scheduler_lock(name = "index", lock_at_most_for = "1m", provider = &*LOCKS)]
async fn reindex() -> Result<Option<u8>, LockError> {
    read_index().await
}

#[scheduler_lock(name = "index", lock_at_most_for = "1m", mode = "shared", provider = &*LOCKS)]
async fn read_index() -> u8 {
    7
}

#[tokio::test]
async fn an_exclusive_job_calling_a_shared_one_runs_it() {
    let nested = reindex().await;
    assert!(matches!(nested, Ok(Some(Ok(Some(7))))), "{nested:?}");
    assert!(!LOCKS.is_locked("index"));
}
