//! The `lock` label of the attribute's metrics: the name, or for a name with
//! placeholders its template (a bounded number of series), unless rendered
//! names are asked for. A lease lost on a real store is counted once, and a
//! call with no provider counts as a failed attempt. Ticks no replica ran
//! are counted when a later tick is claimed.
//!
//! `label_rendered_names` is process-wide: only the first test turns it on,
//! and the others' lock names have no placeholders. No default provider is
//! installed in this binary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use shedlock::metrics::{ACQUIRED, ATTEMPTS, ERRORS, LEASES_LOST, MISSED_TICKS, SKIPPED};
use shedlock::redis::RedisLockProvider;
use shedlock::{
    InMemoryLockProvider, LockConfiguration, LockError, LockingTaskExecutor, missed_every,
    run_for_tick,
};
use shedlock_test_support::redis::RedisServer;

#[shedlock::scheduler_lock(name = "report-{region}", lock_at_most_for = "10s", lock_at_least_for = "5s", provider = locks)]
async fn report(locks: &InMemoryLockProvider, region: &str) -> usize {
    region.len()
}

#[shedlock::scheduler_lock(name = "nightly-report", lock_at_most_for = "10s", provider = locks)]
async fn nightly_report(locks: &InMemoryLockProvider) {}

#[shedlock::scheduler_lock(name = "index-{db}", scope = "db-{db}", lock_at_most_for = "10s", provider = locks)]
async fn rebuild_index(locks: &InMemoryLockProvider, db: u32) {}

/// The counters recorded while `calls` ran, by (metric, `lock` label), and
/// every `lock` label seen.
async fn recorded(calls: impl Future<Output = ()>) -> (Counters, BTreeSet<String>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    {
        let _recording = metrics::set_default_local_recorder(&recorder);
        calls.await;
    }
    let mut counters = Counters::new();
    let mut locks = BTreeSet::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        for label in key.labels().filter(|label| label.key() == "lock") {
            locks.insert(label.value().to_owned());
            if let DebugValue::Counter(n) = value {
                counters.insert((key.name().to_owned(), label.value().to_owned()), n);
            }
        }
    }
    (counters, locks)
}

type Counters = BTreeMap<(String, String), u64>;

/// `counters[(metric, lock)]`, 0 when absent.
fn count(counters: &Counters, metric: &str, lock: &str) -> u64 {
    counters
        .iter()
        .find(|((name, label), _)| *name == metric && label == lock)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn templated_names_are_labelled_by_their_template_unless_rendered_names_are_asked_for() {
    let locks = InMemoryLockProvider::new();
    let (counters, labels) = recorded(async {
        for region in ["eu", "us", "eu"] {
            report(&locks, region).await.unwrap();
        }
        nightly_report(&locks).await.unwrap();
    })
    .await;
    assert_eq!(
        labels,
        BTreeSet::from(["nightly-report".to_owned(), "report-{region}".to_owned()])
    );
    assert_eq!(count(&counters, ATTEMPTS, "report-{region}"), 3);
    assert_eq!(count(&counters, ACQUIRED, "report-{region}"), 2);
    // The second "eu" call: report-eu is kept for lock_at_least_for.
    assert_eq!(count(&counters, SKIPPED, "report-{region}"), 1);
    assert_eq!(count(&counters, ACQUIRED, "nightly-report"), 1);

    shedlock::metrics::label_rendered_names(true);
    let (counters, labels) = recorded(async {
        report(&locks, "ap").await.unwrap();
        nightly_report(&locks).await.unwrap();
    })
    .await;
    shedlock::metrics::label_rendered_names(false);
    assert_eq!(
        labels,
        BTreeSet::from(["nightly-report".to_owned(), "report-ap".to_owned()])
    );
    assert_eq!(count(&counters, ACQUIRED, "report-ap"), 1);

    // Scoped jobs: the owner's runs are acquisitions, the other replica's
    // ticks skips, all labelled by the template.
    let owner = locks.clone().with_locked_by("owner");
    let other = locks.clone().with_locked_by("other");
    let (counters, labels) = recorded(async {
        for _ in 0..3 {
            rebuild_index(&owner, 7).await.unwrap();
            rebuild_index(&other, 7).await.unwrap();
        }
    })
    .await;
    assert_eq!(labels, BTreeSet::from(["index-{db}".to_owned()]));
    assert_eq!(count(&counters, ATTEMPTS, "index-{db}"), 6);
    assert_eq!(count(&counters, ACQUIRED, "index-{db}"), 3);
    assert_eq!(count(&counters, SKIPPED, "index-{db}"), 3);
}

#[tokio::test]
async fn a_job_outliving_its_lease_on_redis_counts_one_lost_lease() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let executor = LockingTaskExecutor::new(RedisLockProvider::connect(server.url()).await?);
    let config = LockConfiguration::new("outlives", Duration::from_millis(200), Duration::ZERO)?;
    let (counters, _) = recorded(async {
        // Default options: nothing watches the lease; the release finds it ended.
        let ran = executor
            .execute(&config, tokio::time::sleep(Duration::from_millis(400)))
            .await;
        assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    })
    .await;
    assert_eq!(count(&counters, ACQUIRED, "outlives"), 1);
    assert_eq!(count(&counters, LEASES_LOST, "outlives"), 1);
    Ok(())
}

/// No `provider = ..`, and no default installed in this binary.
#[shedlock::scheduler_lock(name = "unconfigured-report", lock_at_most_for = "10s")]
async fn unconfigured_report() {}

/// Calls `unconfigured_report` three times, as a scheduler's ticks would
/// (a cron job of it is refused when it is made: see
/// `attribute_not_configured.rs`), counting the calls in `ticks`.
async fn tick_without_a_provider(ticks: Arc<AtomicUsize>) -> anyhow::Result<()> {
    for _ in 0..3 {
        let result = unconfigured_report().await;
        anyhow::ensure!(
            matches!(result, Err(LockError::NotConfigured)),
            "{result:?}"
        );
        ticks.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

#[tokio::test]
async fn a_call_with_no_provider_counts_each_call_as_a_failed_attempt() -> anyhow::Result<()> {
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut scheduled = Ok(());
    let (counters, _) = recorded(async {
        scheduled = tick_without_a_provider(ticks.clone()).await;
    })
    .await;
    scheduled?;
    let ticks = u64::try_from(ticks.load(Ordering::SeqCst))?;
    assert_eq!(ticks, 3);
    let lock = "unconfigured-report";
    assert_eq!(count(&counters, ATTEMPTS, lock), ticks);
    assert_eq!(count(&counters, ERRORS, lock), ticks);
    assert_eq!(count(&counters, ACQUIRED, lock), 0);
    Ok(())
}

#[shedlock::scheduler_lock(name = "every-second-report", lock_at_most_for = "10s", provider = locks)]
async fn every_second_report(locks: &InMemoryLockProvider) {}

#[tokio::test]
async fn ticks_no_replica_ran_are_counted_as_missed_by_the_next_claim() {
    let locks = InMemoryLockProvider::new();
    let every_second = missed_every(Duration::from_secs(1));
    let first = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let (counters, _) = recorded(async {
        // Ticks 2 to 6 are missed.
        for tick in [0, 1, 7] {
            let run = every_second_report(&locks);
            let ran = run_for_tick(first + Duration::from_secs(tick), every_second.clone(), run);
            assert!(matches!(ran.await, Ok(Some(()))), "tick {tick} did not run");
        }
    })
    .await;
    assert_eq!(count(&counters, MISSED_TICKS, "every-second-report"), 5);
    assert_eq!(count(&counters, ACQUIRED, "every-second-report"), 3);
}
