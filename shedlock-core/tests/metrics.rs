//! Every metric of feature `metrics`, as a recorder sees it: attempts and
//! their outcomes, errors by kind, wait and execution times, the active
//! gauge, lost leases and failed extensions.
//!
//! Each test records into its own `DebuggingRecorder`, installed for its
//! thread; `#[tokio::test]` runs everything of the test on that thread.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::LocalRecorderGuard;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use shedlock_core::metrics::{
    ACQUIRED, ACTIVE_EXECUTIONS, ATTEMPTS, ERRORS, EXECUTION_SECONDS, EXTENSIONS_FAILED,
    LAST_ACQUIRED, LEASES_LOST, SKIPPED, WAIT_SECONDS,
};
use shedlock_core::{
    BoxFuture, ExecutionOptions, InMemoryLockProvider, LockAdmin, LockConfiguration, LockError,
    LockGuard, LockProvider, LockingTaskExecutor, StoreFailure, extend_active_lock,
};
use shedlock_test_support::conformance::assert_lease_lost;

/// A metric's value so far.
#[derive(Clone, Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

type Labels = Vec<(String, String)>;

/// Everything a `DebuggingRecorder` recorded, summed over its snapshots (a
/// snapshot resets counters and gauges to 0 and empties histograms, so each
/// holds what changed since the one before; a gauge that is set, not moved,
/// comes out right while it is set at most once between snapshots).
struct Recorded {
    snapshotter: Snapshotter,
    totals: Mutex<Vec<(String, Labels, Value)>>,
}

impl Recorded {
    /// A new `DebuggingRecorder`, installed for this thread while the guard
    /// lives, and what it records. (The recorder is leaked: one small
    /// allocation a test.)
    fn here() -> (Recorded, LocalRecorderGuard<'static>) {
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        let recorded = Recorded {
            snapshotter: recorder.snapshotter(),
            totals: Mutex::new(Vec::new()),
        };
        (recorded, metrics::set_default_local_recorder(recorder))
    }

    /// The totals now.
    fn seen(&self) -> Seen {
        let mut totals = self.totals.lock().unwrap();
        for (key, _unit, _description, change) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Labels = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            let name = key.name().to_owned();
            let at = match totals
                .iter()
                .position(|(n, l, _)| *n == name && *l == labels)
            {
                Some(at) => at,
                None => {
                    let zero = match change {
                        DebugValue::Counter(_) => Value::Counter(0),
                        DebugValue::Gauge(_) => Value::Gauge(0.0),
                        DebugValue::Histogram(_) => Value::Histogram(Vec::new()),
                    };
                    totals.push((name, labels, zero));
                    totals.len() - 1
                }
            };
            match (&mut totals[at].2, change) {
                (Value::Counter(total), DebugValue::Counter(n)) => *total += n,
                (Value::Gauge(total), DebugValue::Gauge(delta)) => *total += delta.0,
                (Value::Histogram(total), DebugValue::Histogram(values)) => {
                    total.extend(values.iter().map(|value| value.0));
                }
                (total, change) => panic!("{total:?} changed kind: {change:?}"),
            }
        }
        Seen(totals.clone())
    }
}

/// The totals at one moment: (name, labels, value).
struct Seen(Vec<(String, Labels, Value)>);

impl Seen {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        self.0
            .iter()
            .find(|(seen, seen_labels, _)| {
                seen == name
                    && seen_labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| seen_labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|(_, _, value)| value)
    }

    /// A counter's value; 0 when it was never incremented.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(Value::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.value(name, labels)? {
            Value::Gauge(value) => Some(*value),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// Every value recorded.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.value(name, labels) {
            Some(Value::Histogram(values)) => values.clone(),
            None => Vec::new(),
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Names of every metric labelled `lock = lock`.
    fn names_for(&self, lock: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .0
            .iter()
            .filter(|(_, labels, _)| labels.iter().any(|(k, v)| k == "lock" && v == lock))
            .map(|(name, _, _)| name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The one lock every test takes, and the labels its metrics carry.
const LOCK: [(&str, &str); 1] = [("lock", "report")];

fn report(most: Duration) -> LockConfiguration {
    LockConfiguration::new("report", most, Duration::ZERO).unwrap()
}

fn in_memory_executor() -> LockingTaskExecutor<InMemoryLockProvider> {
    LockingTaskExecutor::new(InMemoryLockProvider::new())
}

/// A run of a five-second job under a lease of `most`, dropped by its caller
/// after `after`.
async fn drop_a_run_after(most: Duration, after: Duration) {
    let executor = in_memory_executor();
    let run = executor.execute(report(most), tokio::time::sleep(Duration::from_secs(5)));
    let timed_out = tokio::time::timeout(after, run).await;
    assert!(timed_out.is_err(), "the run ended within {after:?}");
}

/// A store where the lock (taken for ten seconds) is held by the guard
/// returned with it.
async fn held_elsewhere() -> (InMemoryLockProvider, LockConfiguration, LockGuard) {
    let provider = InMemoryLockProvider::new();
    let report = report(Duration::from_secs(10));
    let held = provider.try_lock(&report).await.unwrap().unwrap();
    (provider, report, held)
}

/// The leases lost and the extensions failed, as counted for the lock.
fn assert_lost_and_failed(seen: &Seen, leases_lost: u64, extensions_failed: u64) {
    assert_eq!(
        seen.counter(LEASES_LOST, &LOCK),
        leases_lost,
        "{LEASES_LOST}"
    );
    assert_eq!(
        seen.counter(EXTENSIONS_FAILED, &LOCK),
        extensions_failed,
        "{EXTENSIONS_FAILED}"
    );
}

/// A store that fails every acquisition with the error `fail` makes.
struct FailingStore(fn(&str) -> LockError);

impl LockProvider for FailingStore {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move { Err((self.0)(config.name())) })
    }
}

fn store_down(name: &str) -> LockError {
    StoreFailure {
        store: "test",
        action: format!("acquiring lock '{name}'"),
        what_happened: "the store is down".into(),
        consequence: "the lock was not taken".into(),
    }
    .into()
}

fn reply_lost(name: &str) -> LockError {
    LockError::AcquisitionUncertain {
        name: name.to_owned(),
        reason: "timed out".into(),
        released: true,
    }
}

#[tokio::test]
async fn a_run_counts_its_attempt_acquisition_wait_execution_and_activity() {
    let (recorded, _recording) = Recorded::here();
    let executor = in_memory_executor();

    let active_while_running = executor
        .execute(report(Duration::from_secs(10)), async {
            let active = recorded.seen().gauge(ACTIVE_EXECUTIONS, &LOCK);
            tokio::time::sleep(Duration::from_millis(100)).await;
            active
        })
        .await
        .unwrap();

    assert_eq!(active_while_running, Some(Some(1.0)));
    let seen = recorded.seen();
    assert_eq!(seen.counter(ATTEMPTS, &LOCK), 1);
    assert_eq!(seen.counter(ACQUIRED, &LOCK), 1);
    assert_eq!(seen.counter(SKIPPED, &LOCK), 0);
    assert_eq!(seen.gauge(ACTIVE_EXECUTIONS, &LOCK), Some(0.0));
    let waited = seen.histogram(WAIT_SECONDS, &LOCK);
    assert!(waited.len() == 1 && waited[0] < 0.1, "{waited:?}");
    let ran = seen.histogram(EXECUTION_SECONDS, &LOCK);
    assert!(ran.len() == 1 && ran[0] >= 0.1, "{ran:?}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let last = seen.gauge(LAST_ACQUIRED, &LOCK).unwrap();
    assert!((now.as_secs_f64() - last).abs() < 5.0, "{last} at {now:?}");
}

#[tokio::test]
async fn a_lock_held_elsewhere_counts_a_skip() {
    let (recorded, _recording) = Recorded::here();
    let (provider, report, _held) = held_elsewhere().await;

    let ran = LockingTaskExecutor::new(provider)
        .execute(&report, async {})
        .await
        .unwrap();

    assert_eq!(ran, None);
    let seen = recorded.seen();
    assert_eq!(seen.counter(ATTEMPTS, &LOCK), 1);
    assert_eq!(seen.counter(SKIPPED, &LOCK), 1);
    assert_eq!(seen.names_for("report"), [ATTEMPTS, SKIPPED]);
}

#[tokio::test]
async fn a_waiting_run_records_how_long_it_waited() {
    let (recorded, _recording) = Recorded::here();
    let (provider, report, held) = held_elsewhere().await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        held.unlock().await.unwrap();
    });

    let ran = LockingTaskExecutor::new(provider)
        .execute_waiting(&report, Duration::from_secs(5), async {})
        .await
        .unwrap();

    assert_eq!(ran, Some(()));
    let waited = recorded.seen().histogram(WAIT_SECONDS, &LOCK);
    assert!(waited.len() == 1 && waited[0] >= 0.2, "{waited:?}");
}

#[tokio::test]
async fn a_failing_store_counts_an_error_by_its_kind() {
    let (recorded, _recording) = Recorded::here();
    let report = report(Duration::from_secs(10));

    for fail in [store_down, store_down, reply_lost] {
        let result = LockingTaskExecutor::new(FailingStore(fail))
            .execute(&report, async {})
            .await;
        assert!(result.is_err(), "{result:?}");
    }

    let seen = recorded.seen();
    assert_eq!(seen.counter(ATTEMPTS, &LOCK), 3);
    assert_eq!(seen.counter(ERRORS, &[LOCK[0], ("kind", "store")]), 2);
    assert_eq!(
        seen.counter(ERRORS, &[LOCK[0], ("kind", "acquisition_uncertain")]),
        1
    );
    assert_eq!(seen.counter(ACQUIRED, &LOCK), 0);
}

#[tokio::test]
async fn a_refused_nested_call_counts_an_attempt_and_an_error_and_a_reentrant_one_nothing() {
    let (recorded, _recording) = Recorded::here();
    let executor = in_memory_executor();
    let shared = report(Duration::from_secs(10)).shared();
    let exclusive = report(Duration::from_secs(10));

    let (same, upgrade) = executor
        .execute(&shared, async {
            let same = executor.execute(&shared, async {}).await;
            let upgrade = executor.execute(&exclusive, async {}).await;
            (same, upgrade)
        })
        .await
        .unwrap()
        .unwrap();

    assert_eq!(same.unwrap(), Some(()));
    assert!(
        matches!(upgrade, Err(LockError::ReentrantUpgrade { .. })),
        "{upgrade:?}"
    );
    let seen = recorded.seen();
    assert_eq!(seen.counter(ATTEMPTS, &LOCK), 2);
    assert_eq!(seen.counter(ACQUIRED, &LOCK), 1);
    assert_eq!(
        seen.counter(ERRORS, &[LOCK[0], ("kind", "reentrant_upgrade")]),
        1
    );
    assert_eq!(seen.histogram(EXECUTION_SECONDS, &LOCK).len(), 1);
}

#[tokio::test]
async fn a_lease_ending_under_a_job_counts_one_lost_lease() {
    let (recorded, _recording) = Recorded::here();
    let executor = in_memory_executor();
    let options = ExecutionOptions::new().cancel_on_lease_loss(true);

    let result = executor
        .execute_with(
            report(Duration::from_millis(200)),
            options,
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;

    assert_lease_lost(&result);
    let seen = recorded.seen();
    // Seen by the watcher, and again by the release: counted once.
    assert_lost_and_failed(&seen, 1, 0);
    // Counted once as an acquisition: losing the lease later is no error in taking it.
    assert_eq!(seen.counter(ACQUIRED, &LOCK), 1);
    assert!(!seen.names_for("report").contains(&ERRORS));
    assert_eq!(seen.gauge(ACTIVE_EXECUTIONS, &LOCK), Some(0.0));
}

#[tokio::test]
async fn a_job_outliving_its_lease_counts_one_lost_lease_when_its_release_finds_it_ended() {
    let (recorded, _recording) = Recorded::here();
    let executor = in_memory_executor();

    // Default options: nothing watches the lease; the release finds it ended.
    let ran = executor
        .execute(
            report(Duration::from_millis(200)),
            tokio::time::sleep(Duration::from_millis(400)),
        )
        .await
        .unwrap();

    assert_eq!(ran, Some(()));
    assert_lost_and_failed(&recorded.seen(), 1, 0);
}

#[tokio::test]
async fn a_run_cancelled_after_its_lease_ended_counts_one_lost_lease() {
    let (recorded, _recording) = Recorded::here();
    drop_a_run_after(Duration::from_millis(200), Duration::from_millis(400)).await;

    // The cancelled run's lease is given back in the background (a task on
    // this thread, so its metrics reach this test's recorder).
    let mut lost = 0;
    for _ in 0..100 {
        lost = recorded.seen().counter(LEASES_LOST, &LOCK);
        if lost > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lost, 1);
}

#[tokio::test]
async fn a_keep_alive_finding_the_lease_gone_counts_a_failed_extension_and_a_lost_lease() {
    let (recorded, _recording) = Recorded::here();
    let provider = InMemoryLockProvider::new();
    let executor = LockingTaskExecutor::new(provider.clone());
    let options = ExecutionOptions::new()
        .keep_alive(true)
        .cancel_on_lease_loss(true);

    let result = executor
        .execute_with(report(Duration::from_millis(600)), options, async {
            // An operator force-releases the lock; the next extension finds it gone.
            provider.force_release("report").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;

    assert_lease_lost(&result);
    assert_lost_and_failed(&recorded.seen(), 1, 1);
}

#[tokio::test]
async fn a_jobs_own_extension_of_a_lost_lease_counts_a_failed_extension_and_a_lost_lease() {
    let (recorded, _recording) = Recorded::here();
    let provider = InMemoryLockProvider::new();
    let executor = LockingTaskExecutor::new(provider.clone());

    let extended = executor
        .execute(report(Duration::from_secs(10)), async {
            provider.force_release("report").await.unwrap();
            let first = extend_active_lock(Duration::from_secs(10), Duration::ZERO).await;
            let second = extend_active_lock(Duration::from_secs(10), Duration::ZERO).await;
            (first, second)
        })
        .await
        .unwrap();

    assert!(
        matches!(
            extended,
            Some((
                Err(LockError::LeaseLost { .. }),
                Err(LockError::LeaseLost { .. })
            ))
        ),
        "{extended:?}"
    );
    // One lease, lost once; both extensions failed.
    assert_lost_and_failed(&recorded.seen(), 1, 2);
}

#[tokio::test]
async fn a_panicking_job_still_records_its_execution_and_leaves_the_gauge() {
    let (recorded, _recording) = Recorded::here();
    let executor = in_memory_executor();

    let run = tokio::spawn(async move {
        executor
            .execute(report(Duration::from_secs(10)), async {
                panic!("the job failed");
            })
            .await
    });

    assert!(run.await.unwrap_err().is_panic());
    let seen = recorded.seen();
    assert_eq!(seen.gauge(ACTIVE_EXECUTIONS, &LOCK), Some(0.0));
    assert_eq!(seen.histogram(EXECUTION_SECONDS, &LOCK).len(), 1);
}

#[tokio::test]
async fn a_run_dropped_by_its_caller_leaves_the_gauge() {
    let (recorded, _recording) = Recorded::here();
    drop_a_run_after(Duration::from_secs(10), Duration::from_millis(100)).await;

    let seen = recorded.seen();
    assert_eq!(seen.counter(ACQUIRED, &LOCK), 1);
    assert_eq!(seen.gauge(ACTIVE_EXECUTIONS, &LOCK), Some(0.0));
}

#[test]
fn describe_gives_every_metric_its_unit() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        shedlock_core::metrics::describe();
        metrics::counter!(ERRORS, "lock" => "x", "kind" => "store").increment(1);
        metrics::histogram!(EXECUTION_SECONDS, "lock" => "x").record(1.0);
    });
    let units: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, description, _)| (key.key().name().to_owned(), unit, description))
        .collect();
    for (name, unit, description) in units {
        let expected = if name.ends_with("_seconds") {
            metrics::Unit::Seconds
        } else {
            metrics::Unit::Count
        };
        assert_eq!(unit, Some(expected), "{name}");
        assert!(description.is_some(), "{name}");
    }
}
