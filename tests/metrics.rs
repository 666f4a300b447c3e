//! The `lock` label of the attribute's metrics: the name, or for a name with
//! placeholders its template (a bounded number of series), unless rendered
//! names are asked for.
//!
//! One test: `label_rendered_names` is process-wide.

use std::collections::{BTreeMap, BTreeSet};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use shedlock::InMemoryLockProvider;
use shedlock::metrics::{ACQUIRED, ATTEMPTS, SKIPPED};

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
