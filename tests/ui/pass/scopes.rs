//! Scoped jobs: placeholders from arguments, with and without a provider.

use shedlock::InMemoryLockProvider;

#[shedlock::scheduler_lock(name = "index-{db}", scope = "db-{db}", lock_at_most_for = "10m")]
async fn rebuild_index(db: &str) -> usize {
    db.len()
}

#[shedlock::scheduler_lock(
    name = "vacuum-{db}",
    scope = "db-{db}",
    lock_at_most_for = "10m",
    wait_for = "1s",
    cancel_on_lease_loss = true,
    provider = provider
)]
async fn vacuum(provider: &InMemoryLockProvider, db: u32) -> u32 {
    db
}

#[shedlock::scheduler_lock(name = "static", scope = "global", lock_at_most_for = "1m")]
async fn static_scope() {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let provider = InMemoryLockProvider::new();
    assert_eq!(vacuum(&provider, 7).await.ok().flatten(), Some(7));
    assert!(matches!(
        rebuild_index("a").await,
        Err(shedlock::LockError::NotConfigured)
    ));
    assert!(static_scope().await.is_err());
}
