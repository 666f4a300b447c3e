//! The run history tells what became of each run, whatever started it: the
//! attribute, the executor, a cron job made with `locked_job` or
//! `annotated_job`. A job that returned `Err` is `error`, a run its caller
//! or a stopped scheduler cancelled is `cancelled`, a run that outlived its
//! lease is `lease_lost`, and a run that ended well is `ok`. On memory, a
//! private Redis, and (attribute and executor) the PostgreSQL, MariaDB and
//! SQLite test databases; history on.
//!
//! Outcomes are compared as the store writes them (`"ok"`, `"error"`, ...),
//! as an operator reads them in `shedlock history`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shedlock::admin::LockAdmin;
use shedlock::cron::LockedJobs;
use shedlock::redis::RedisLockProvider;
use shedlock::{
    ExecutionOptions, InMemoryLockProvider, LockConfiguration, LockProvider, LockingTaskExecutor,
    scheduler_lock,
};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{mysql, postgres, sqlite_on_a_new_file, unique_table_name};
use tokio_cron_scheduler::JobScheduler;

const EVERY_SECOND: &str = "*/1 * * * * *";
/// A lease the jobs that outlive it run past.
const SHORT_LEASE: Duration = Duration::from_millis(300);
/// How long a job runs that outlives [`SHORT_LEASE`].
const PAST_THE_LEASE: Duration = Duration::from_millis(700);
/// How long a job runs that only a cancellation ends.
const FOREVER: Duration = Duration::from_secs(60);
/// How long a test waits for a run or a record before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// A store whose run history the tests read.
trait Store: LockProvider + LockAdmin {}
impl<S: LockProvider + LockAdmin> Store for S {}

/// The outcomes of the runs of `name`, oldest first, as the store writes them.
async fn outcomes(locks: &dyn Store, name: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut runs = locks.run_history(name).await?;
    runs.reverse();
    Ok(runs.iter().map(|run| run.outcome.as_str()).collect())
}

/// The outcomes of the runs of `name` once there are at least `runs` of them.
async fn once_recorded(
    locks: &dyn Store,
    name: &str,
    runs: usize,
) -> anyhow::Result<Vec<&'static str>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let recorded = outcomes(locks, name).await?;
        if recorded.len() >= runs || Instant::now() > deadline {
            return Ok(recorded);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `count` has reached `at_least`.
async fn once_counted(count: &AtomicUsize, at_least: usize, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while count.load(Ordering::SeqCst) < at_least {
        if Instant::now() > deadline {
            bail!("{what} did not start within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Every mismatch between what the history says and what happened, so one
/// failure shows them all.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn expect(&mut self, what: &str, recorded: &[&str], expected: &[&str]) {
        println!("{what}: {recorded:?}");
        if recorded != expected {
            self.0.push(format!(
                "{what}: recorded {recorded:?}, expected {expected:?}"
            ));
        }
    }

    fn check(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            bail!("the run history is wrong:\n  {}", self.0.join("\n  "))
        }
    }
}

#[scheduler_lock(name = "outcome-attribute-ok-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn attribute_ok(locks: &dyn Store, tag: &str) -> Result<(), String> {
    Ok(())
}

#[scheduler_lock(name = "outcome-attribute-err-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn attribute_err(locks: &dyn Store, tag: &str) -> Result<(), String> {
    Err("disk full".to_owned())
}

#[scheduler_lock(name = "outcome-attribute-cancelled-{tag}", lock_at_most_for = "10s", provider = locks)]
async fn attribute_forever(locks: &dyn Store, tag: &str, started: &AtomicUsize) {
    started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(FOREVER).await;
}

/// Runs through the attribute and the executor: ended, failed, cancelled by
/// their caller (their futures dropped), outliving their lease, panicking.
async fn direct_runs_are_recorded_with_their_outcomes(
    locks: Arc<dyn Store>,
    tag: &str,
) -> anyhow::Result<()> {
    let mut mismatches = Mismatches::default();
    let name = |what: &str| format!("outcome-{what}-{tag}");

    attribute_ok(&*locks, tag).await?;
    let recorded = once_recorded(&*locks, &name("attribute-ok"), 1).await?;
    mismatches.expect("attribute, Ok", &recorded, &["ok"]);

    attribute_err(&*locks, tag).await?;
    let recorded = once_recorded(&*locks, &name("attribute-err"), 1).await?;
    mismatches.expect("attribute, Err", &recorded, &["error"]);

    let started = AtomicUsize::new(0);
    let call = attribute_forever(&*locks, tag, &started);
    tokio::select! {
        biased;
        waited = once_counted(&started, 1, "the attribute's job") => waited?,
        _ = call => bail!("the attribute's endless job ended"),
    }
    let recorded = once_recorded(&*locks, &name("attribute-cancelled"), 1).await?;
    mismatches.expect(
        "attribute, dropped by its caller",
        &recorded,
        &["cancelled"],
    );

    let executor = LockingTaskExecutor::new(locks.clone());
    let config = |what: &str, lease: Duration| {
        LockConfiguration::new(name(what), lease, Duration::ZERO).context("a test configuration")
    };

    executor
        .execute(config("executor-ok", PATIENCE)?, async {})
        .await?;
    let recorded = once_recorded(&*locks, &name("executor-ok"), 1).await?;
    mismatches.expect("executor, returned", &recorded, &["ok"]);

    let failed = executor
        .execute_fallible(config("executor-err", PATIENCE)?, async {
            Err::<(), _>("the job failed")
        })
        .await?;
    anyhow::ensure!(failed == Some(Err("the job failed")), "{failed:?}");
    let recorded = once_recorded(&*locks, &name("executor-err"), 1).await?;
    mismatches.expect("executor, fallible, Err", &recorded, &["error"]);
    let fine = executor
        .execute_fallible(config("executor-fallible-ok", PATIENCE)?, async {
            Ok::<u8, String>(7)
        })
        .await?;
    anyhow::ensure!(fine == Some(Ok(7)), "{fine:?}");
    let recorded = once_recorded(&*locks, &name("executor-fallible-ok"), 1).await?;
    mismatches.expect("executor, fallible, Ok", &recorded, &["ok"]);

    let started = AtomicUsize::new(0);
    let forever = config("executor-cancelled", PATIENCE)?;
    let run = executor.execute(&forever, async {
        started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(FOREVER).await;
    });
    tokio::select! {
        biased;
        waited = once_counted(&started, 1, "the executor's job") => waited?,
        _ = run => bail!("the executor's endless job ended"),
    }
    let recorded = once_recorded(&*locks, &name("executor-cancelled"), 1).await?;
    mismatches.expect("executor, dropped by its caller", &recorded, &["cancelled"]);

    executor
        .execute(
            config("executor-lost", SHORT_LEASE)?,
            tokio::time::sleep(PAST_THE_LEASE),
        )
        .await?;
    let recorded = once_recorded(&*locks, &name("executor-lost"), 1).await?;
    mismatches.expect("executor, outliving its lease", &recorded, &["lease_lost"]);

    let lost = executor
        .execute_with(
            config("executor-lost-cancelled", SHORT_LEASE)?,
            ExecutionOptions::new().cancel_on_lease_loss(true),
            tokio::time::sleep(FOREVER),
        )
        .await;
    anyhow::ensure!(lost.is_err(), "a job outliving its lease was not cancelled");
    let recorded = once_recorded(&*locks, &name("executor-lost-cancelled"), 1).await?;
    mismatches.expect(
        "executor, cancelled on lease loss",
        &recorded,
        &["lease_lost"],
    );

    let panicking = {
        let executor = executor.clone();
        let config = config("executor-panic", PATIENCE)?;
        tokio::spawn(async move {
            executor
                .execute(config, async { panic!("the job panicked") }) // allow-panic: the test's subject
                .await
        })
    };
    anyhow::ensure!(panicking.await.is_err_and(|err| err.is_panic()));
    let recorded = once_recorded(&*locks, &name("executor-panic"), 1).await?;
    mismatches.expect("executor, panicked", &recorded, &["panic"]);

    mismatches.check()
}

#[scheduler_lock(name = "outcome-cron-annotated-err", lock_at_most_for = "10s", provider = locks)]
async fn cron_annotated_err(locks: &dyn Store) -> Result<(), String> {
    Err("disk full".to_owned())
}

#[scheduler_lock(name = "outcome-cron-annotated-stopped", lock_at_most_for = "30s", provider = locks)]
async fn cron_annotated_forever(locks: &dyn Store, started: &AtomicUsize) {
    started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(FOREVER).await;
}

/// Cron jobs of both kinds that end well, fail, outlive their lease, or are
/// still running when the scheduler shuts down.
async fn cron_runs_are_recorded_with_their_outcomes(locks: Arc<dyn Store>) -> anyhow::Result<()> {
    let mut scheduler = JobScheduler::new().await?;
    let jobs = LockedJobs::stopping_with(&mut scheduler);
    let config = |name: &str, lease: Duration| LockConfiguration::new(name, lease, Duration::ZERO);
    let (locked_started, annotated_started) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let ok = config("outcome-cron-ok", PATIENCE)?;
    scheduler
        .add(jobs.locked_job(EVERY_SECOND, locks.clone(), ok, || async {
            Ok::<_, String>(())
        })?)
        .await?;
    let err = config("outcome-cron-err", PATIENCE)?;
    scheduler
        .add(jobs.locked_job(EVERY_SECOND, locks.clone(), err, || async {
            Err::<(), _>("disk full".to_owned())
        })?)
        .await?;
    let lost = config("outcome-cron-lost", SHORT_LEASE)?;
    scheduler
        .add(jobs.locked_job(EVERY_SECOND, locks.clone(), lost, || {
            tokio::time::sleep(PAST_THE_LEASE)
        })?)
        .await?;
    let stopped = config("outcome-cron-stopped", Duration::from_secs(30))?;
    let started = locked_started.clone();
    scheduler
        .add(
            jobs.locked_job(EVERY_SECOND, locks.clone(), stopped, move || {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(FOREVER)
            })?,
        )
        .await?;
    let annotated = locks.clone();
    scheduler
        .add(jobs.annotated_job(EVERY_SECOND, move || {
            let locks = annotated.clone();
            async move { cron_annotated_err(&*locks).await }
        })?)
        .await?;
    let (annotated, started) = (locks.clone(), annotated_started.clone());
    scheduler
        .add(jobs.annotated_job(EVERY_SECOND, move || {
            let (locks, started) = (annotated.clone(), started.clone());
            async move { cron_annotated_forever(&*locks, &started).await }
        })?)
        .await?;
    scheduler.start().await?;

    // Every job has run (or started) once.
    for name in [
        "outcome-cron-ok",
        "outcome-cron-err",
        "outcome-cron-lost",
        "outcome-cron-annotated-err",
    ] {
        once_recorded(&*locks, name, 1).await?;
    }
    once_counted(&locked_started, 1, "the endless locked_job").await?;
    once_counted(&annotated_started, 1, "the endless annotated_job").await?;
    scheduler.shutdown().await?;

    // A run of the short jobs may be in progress when the scheduler stops:
    // that one is cancelled (or lost its lease); the others say how they ended.
    let mut mismatches = Mismatches::default();
    for (name, expected) in [
        ("outcome-cron-ok", "ok"),
        ("outcome-cron-err", "error"),
        ("outcome-cron-lost", "lease_lost"),
        ("outcome-cron-annotated-err", "error"),
    ] {
        let mut recorded = outcomes(&*locks, name).await?;
        if recorded.len() > 1 && recorded.last() == Some(&"cancelled") {
            recorded.pop();
        }
        if name == "outcome-cron-lost" {
            recorded.truncate(1); // the run cut short may have lost its lease too
        }
        let expected = vec![expected; recorded.len().max(1)];
        mismatches.expect(name, &recorded, &expected);
    }
    let recorded = once_recorded(&*locks, "outcome-cron-stopped", 1).await?;
    mismatches.expect("locked_job, stopped", &recorded, &["cancelled"]);
    let recorded = once_recorded(&*locks, "outcome-cron-annotated-stopped", 1).await?;
    mismatches.expect("annotated_job, stopped", &recorded, &["cancelled"]);
    mismatches.check()
}

async fn redis(server: &RedisServer) -> anyhow::Result<Arc<dyn Store>> {
    let locks = RedisLockProvider::connect(server.url())
        .await?
        .with_run_history(true);
    Ok(Arc::new(locks))
}

#[tokio::test]
async fn attribute_and_executor_runs_are_recorded_with_their_outcomes_in_memory()
-> anyhow::Result<()> {
    direct_runs_are_recorded_with_their_outcomes(Arc::new(InMemoryLockProvider::new()), "memory")
        .await
}

#[tokio::test]
async fn attribute_and_executor_runs_are_recorded_with_their_outcomes_on_redis()
-> anyhow::Result<()> {
    let server = RedisServer::start();
    direct_runs_are_recorded_with_their_outcomes(redis(&server).await?, "redis").await
}

/// A test on each SQL store: `$locks`, a store on a table of its own,
/// recording its runs (history is opt-in there).
macro_rules! direct_runs_are_recorded_on_sql {
    ($($test:ident: $tag:literal, $locks:expr;)*) => {$(
        #[tokio::test]
        async fn $test() -> anyhow::Result<()> {
            let locks: Arc<dyn Store> = Arc::new($locks.await.with_run_history(true));
            direct_runs_are_recorded_with_their_outcomes(locks, $tag).await
        }
    )*};
}

direct_runs_are_recorded_on_sql! {
    attribute_and_executor_runs_are_recorded_with_their_outcomes_on_postgres: "postgres",
        postgres(&unique_table_name("outcomes"));
    attribute_and_executor_runs_are_recorded_with_their_outcomes_on_mysql: "mysql",
        mysql(&unique_table_name("outcomes"));
    attribute_and_executor_runs_are_recorded_with_their_outcomes_on_sqlite: "sqlite",
        sqlite_on_a_new_file(env!("CARGO_TARGET_TMPDIR"), "outcomes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_are_recorded_with_their_outcomes_in_memory() -> anyhow::Result<()> {
    cron_runs_are_recorded_with_their_outcomes(Arc::new(InMemoryLockProvider::new())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_are_recorded_with_their_outcomes_on_redis() -> anyhow::Result<()> {
    let server = RedisServer::start();
    cron_runs_are_recorded_with_their_outcomes(redis(&server).await?).await
}
