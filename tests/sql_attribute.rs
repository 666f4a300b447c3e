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

/// The scoped job on `store`, ticked by two replicas that `replica` makes
/// (given their `locked_by`: `replica-1`, `replica-2`), each on a pool of
/// its own: the first to tick keeps the scope.
async fn scopes_stay_with_their_owner<P: shedlock::LockProvider>(
    store: &str,
    replica: impl AsyncFn(&str) -> P,
) -> anyhow::Result<()> {
    let (first, second) = (replica("replica-1").await, replica("replica-2").await);
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
    use shedlock_test_support::sql::{mysql, postgres, sqlite, sqlite_file, unique_table_name};

    let table = unique_table_name("scoped");
    scopes_stay_with_their_owner("postgres", async |replica| {
        postgres(&table).await.with_locked_by(replica)
    })
    .await?;
    scopes_stay_with_their_owner("mysql", async |replica| {
        mysql(&table).await.with_locked_by(replica)
    })
    .await?;
    let file = sqlite_file(env!("CARGO_TARGET_TMPDIR"), &table);
    scopes_stay_with_their_owner("sqlite", async |replica| {
        sqlite(&file, &table).await.with_locked_by(replica)
    })
    .await
}
