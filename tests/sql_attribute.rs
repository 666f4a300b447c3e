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

/// A scoped job on each SQL store: the first replica to tick owns the scope
/// and runs every later tick; the other skips; the run's token is the
/// scope's term; the scope stays held in the table between ticks.
#[scheduler_lock(name = "sql-scoped-{store}", scope = "sql-{store}", lock_at_most_for = "10s", provider = locks)]
async fn scoped<P: shedlock::LockProvider>(locks: &P, store: &str) -> anyhow::Result<u64> {
    let lock = shedlock::current_lock().ok_or_else(|| anyhow::anyhow!("no current lock"))?;
    Ok(lock.fencing_token().await?)
}

async fn scopes_stay_with_their_owner<P: shedlock::LockProvider>(
    store: &str,
    first: P,
    second: P,
) -> anyhow::Result<()> {
    let term = scoped(&first, store).await?.transpose()?;
    assert!(term.is_some(), "{store}: the first tick runs");
    for _ in 0..3 {
        assert_eq!(scoped(&second, store).await?.transpose()?, None, "{store}");
        assert_eq!(scoped(&first, store).await?.transpose()?, term, "{store}");
    }
    Ok(())
}

#[tokio::test]
async fn scoped_jobs_stay_with_their_owner_on_every_sql_store() -> anyhow::Result<()> {
    use shedlock::sql::{MySqlLockProvider, PostgresLockProvider};
    use shedlock_test_support::sql::{mysql_url, postgres_url, unique_table_name};

    let table = unique_table_name("scoped");
    let postgres = || async {
        let provider = PostgresLockProvider::connect(&postgres_url())
            .await?
            .with_table_name(&table)?;
        provider.create_table_if_missing().await?;
        anyhow::Ok(provider)
    };
    let (first, second) = (postgres().await?, postgres().await?);
    scopes_stay_with_their_owner(
        "postgres",
        first.with_locked_by("replica-1"),
        second.with_locked_by("replica-2"),
    )
    .await?;

    let mysql = || async {
        let provider = MySqlLockProvider::connect(&mysql_url())
            .await?
            .with_table_name(&table)?;
        provider.create_table_if_missing().await?;
        anyhow::Ok(provider)
    };
    let (first, second) = (mysql().await?, mysql().await?);
    scopes_stay_with_their_owner(
        "mysql",
        first.with_locked_by("replica-1"),
        second.with_locked_by("replica-2"),
    )
    .await?;

    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{table}.db"));
    let first = SqliteLockProvider::open(&file).await?;
    first.create_table_if_missing().await?;
    let second = SqliteLockProvider::open(&file).await?;
    scopes_stay_with_their_owner(
        "sqlite",
        first.with_locked_by("replica-1"),
        second.with_locked_by("replica-2"),
    )
    .await
}
