//! `#[scheduler_lock]` through the facade's SQL providers (`shedlock::sql`):
//! two "replicas" with their own providers on one SQLite file.

use shedlock::scheduler_lock;
use shedlock::sql::SqliteLockProvider;

#[scheduler_lock(name = "sql-attribute", lock_at_most_for = "10s", lock_at_least_for = "5s", provider = locks)]
async fn report(locks: &SqliteLockProvider) -> u32 {
    shedlock::assert_locked();
    42
}

#[tokio::test]
async fn the_attribute_runs_once_across_two_providers_on_one_file() -> anyhow::Result<()> {
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}.db",
        shedlock_test_support::sql::unique_table_name("attribute")
    ));
    let first = SqliteLockProvider::open(&file).await?;
    first.create_table_if_missing().await?;
    let second = SqliteLockProvider::open(&file).await?;
    assert_eq!(report(&first).await?, Some(42));
    // lock_at_least_for (5 s, from the database's locked_at) keeps it held.
    assert_eq!(report(&second).await?, None);
    Ok(())
}
