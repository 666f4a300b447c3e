//! Last runs in the store: every run under a lock is recorded with its
//! release (outcome ok, error, panic or lease lost; holder; token; times),
//! the last 20 kept, newest first; ticks no replica ran are one `missed`
//! entry (how many, the first and the last). On memory, a private Redis, and the
//! PostgreSQL, MariaDB and SQLite test databases (a table of their own;
//! history is opt-in there).

use shedlock_test_support::conformance::assert_lease_lost;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shedlock::admin::{LockAdmin, RUN_HISTORY_LEN, RunOutcome};
use shedlock::redis::RedisLockProvider;
use shedlock::{InMemoryLockProvider, LockProvider, missed_every, run_for_tick, scheduler_lock};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{mysql, postgres, sqlite_on_a_new_file, unique_table_name};

#[scheduler_lock(name = "history-ok-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn succeeds(locks: &dyn LockProvider, tag: &str) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let lock = shedlock::current_lock().ok_or("no lock")?;
    lock.fencing_token().await.map_err(|err| err.to_string())
}

#[scheduler_lock(name = "history-err-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn fails(locks: &dyn LockProvider, tag: &str) -> anyhow::Result<()> {
    anyhow::bail!("the job failed")
}

#[scheduler_lock(name = "history-panic-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn panics(locks: Arc<dyn LockProvider>, tag: String) {
    panic!("the job panicked"); // allow-panic: the test's subject
}

#[scheduler_lock(
    name = "history-lost-{tag}",
    lock_at_most_for = "600ms",
    keep_alive = true,
    cancel_on_lease_loss = true,
    provider = locks
)]
async fn loses_its_lease(locks: &dyn LockProvider, tag: &str) {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[scheduler_lock(name = "history-shared-{tag}", lock_at_most_for = "10s", permits = 2, provider = locks)]
async fn shared(locks: &dyn LockProvider, tag: &str) -> Result<(), String> {
    Err("a shared job's error".to_owned())
}

#[scheduler_lock(name = "history-ticks-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn ticking(locks: &dyn LockProvider, tag: &str) {}

/// Runs `ticking` for ticks 0, 1 and 7 of a schedule every second: ticks 2
/// to 6 were missed, recorded before the run of tick 7.
async fn misses_five_ticks(locks: &dyn LockProvider, tag: &str) -> anyhow::Result<()> {
    let every_second = missed_every(Duration::from_secs(1));
    for tick in [0, 1, 7] {
        let run = ticking(locks, tag);
        let ran = run_for_tick(
            first_tick() + Duration::from_secs(tick),
            every_second.clone(),
            run,
        );
        anyhow::ensure!(ran.await?.is_some(), "tick {tick} did not run");
    }
    Ok(())
}

fn first_tick() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[scheduler_lock(name = "history-many-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn numbered(locks: &dyn LockProvider, tag: &str, n: u32) -> u32 {
    n
}

/// Whether a store takes shared and counted locks (the SQL stores refuse them).
#[derive(Clone, Copy, PartialEq)]
enum LockKinds {
    All,
    ExclusiveOnly,
}

async fn every_outcome_is_recorded<A>(
    locks: Arc<A>,
    tag: &str,
    kinds: LockKinds,
) -> anyhow::Result<()>
where
    A: LockProvider + LockAdmin,
{
    let before = SystemTime::now() - Duration::from_secs(1);
    let token = succeeds(&*locks, tag)
        .await?
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let runs = locks.run_history(&format!("history-ok-{tag}")).await?;
    anyhow::ensure!(runs.len() == 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run.outcome, RunOutcome::Ok);
    assert_eq!(run.fencing_token, token);
    assert!(run.duration >= Duration::from_millis(30), "{run:?}");
    assert!(
        run.started_at >= before && run.finished_at >= run.started_at,
        "{run:?}"
    );
    assert!(!run.locked_by.is_empty());

    assert!(fails(&*locks, tag).await?.is_some_and(|ran| ran.is_err()));
    let runs = locks.run_history(&format!("history-err-{tag}")).await?;
    assert_eq!(runs.first().map(|run| run.outcome), Some(RunOutcome::Error));

    let panicking = tokio::spawn(panics(locks.clone(), tag.to_owned())).await;
    assert!(panicking.is_err_and(|err| err.is_panic()));
    let runs = locks.run_history(&format!("history-panic-{tag}")).await?;
    assert_eq!(runs.first().map(|run| run.outcome), Some(RunOutcome::Panic));

    // The lease is taken away: the keep-alive finds it gone, the job is cancelled.
    let name = format!("history-lost-{tag}");
    let lost = {
        let locks = locks.clone();
        let tag = tag.to_owned();
        tokio::spawn(async move { loses_its_lease(&*locks, &tag).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(locks.force_release(&name).await?, 1);
    let outcome = tokio::time::timeout(Duration::from_secs(5), lost).await??;
    assert_lease_lost(&outcome);
    let runs = locks.run_history(&name).await?;
    assert_eq!(
        runs.first().map(|run| run.outcome),
        Some(RunOutcome::LeaseLost),
        "{runs:?}"
    );

    // Missed ticks: one entry between the runs of the ticks around them.
    misses_five_ticks(&*locks, tag).await?;
    let runs = locks.run_history(&format!("history-ticks-{tag}")).await?;
    let outcomes: Vec<RunOutcome> = runs.iter().map(|run| run.outcome).collect();
    assert_eq!(
        outcomes,
        [
            RunOutcome::Ok,
            RunOutcome::Missed,
            RunOutcome::Ok,
            RunOutcome::Ok
        ],
        "{runs:?}"
    );
    let missed = &runs[1];
    assert_eq!(missed.missed_ticks, Some(5), "{missed:?}");
    assert_eq!(missed.fencing_token, None, "{missed:?}");
    assert_eq!(
        missed.started_at,
        first_tick() + Duration::from_secs(2),
        "{missed:?}"
    );
    assert_eq!(
        missed.finished_at,
        first_tick() + Duration::from_secs(6),
        "{missed:?}"
    );
    assert!(
        runs.iter()
            .filter(|run| run.outcome == RunOutcome::Ok)
            .all(|run| run.missed_ticks.is_none())
    );

    // A shared (counted) holder's run is recorded by its release too.
    if kinds == LockKinds::All {
        assert!(shared(&*locks, tag).await?.is_some_and(|ran| ran.is_err()));
        let runs = locks.run_history(&format!("history-shared-{tag}")).await?;
        assert_eq!(
            runs.first().map(|run| run.outcome),
            Some(RunOutcome::Error),
            "{runs:?}"
        );
    }

    // The last 20, newest first.
    for n in 0..25 {
        numbered(&*locks, tag, n).await?;
    }
    let runs = locks.run_history(&format!("history-many-{tag}")).await?;
    assert_eq!(runs.len(), RUN_HISTORY_LEN);
    assert!(
        runs.windows(2)
            .all(|pair| pair[0].finished_at >= pair[1].finished_at),
        "newest first: {runs:?}"
    );
    // The last run of each name, in the order asked, none for a name never run.
    let names: Vec<String> = ["history-many", "never-run", "history-err", "history-lost"]
        .iter()
        .map(|name| format!("{name}-{tag}"))
        .collect();
    let last = locks.last_runs(&names).await?;
    assert_eq!(last.len(), names.len());
    assert_eq!(last[0].as_ref(), runs.first(), "{last:?}");
    assert_eq!(last[1], None, "{last:?}");
    assert_eq!(
        last[2].as_ref().map(|run| run.outcome),
        Some(RunOutcome::Error)
    );
    assert_eq!(
        last[3].as_ref().map(|run| run.outcome),
        Some(RunOutcome::LeaseLost)
    );
    // A lock that is not held but has runs is listed.
    let listed = locks.list_locks().await?;
    assert!(
        listed
            .iter()
            .any(|lock| lock.name == format!("history-many-{tag}") && !lock.is_locked()),
        "{listed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn every_outcome_is_recorded_in_memory() -> anyhow::Result<()> {
    every_outcome_is_recorded(
        Arc::new(InMemoryLockProvider::new()),
        "memory",
        LockKinds::All,
    )
    .await
}

#[tokio::test]
async fn every_outcome_is_recorded_on_redis() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let locks = RedisLockProvider::connect(server.url())
        .await?
        .with_run_history(true);
    every_outcome_is_recorded(Arc::new(locks), "redis", LockKinds::All).await
}

/// A test on each SQL store: `$locks`, a store on a table of its own,
/// recording its runs (history is opt-in there), exclusive locks only.
macro_rules! every_outcome_is_recorded_on_sql {
    ($($test:ident: $tag:literal, $locks:expr;)*) => {$(
        #[tokio::test]
        async fn $test() -> anyhow::Result<()> {
            let locks = Arc::new($locks.await.with_run_history(true));
            every_outcome_is_recorded(locks, $tag, LockKinds::ExclusiveOnly).await
        }
    )*};
}

every_outcome_is_recorded_on_sql! {
    every_outcome_is_recorded_on_postgres: "postgres", postgres(&unique_table_name("history"));
    every_outcome_is_recorded_on_mysql: "mysql", mysql(&unique_table_name("history"));
    every_outcome_is_recorded_on_sqlite: "sqlite",
        sqlite_on_a_new_file(env!("CARGO_TARGET_TMPDIR"), "history");
}
