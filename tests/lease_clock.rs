//! A lease is counted from when its request was sent, never from when an
//! answer arrived: leaders and job scopes whose store answers late, or
//! whose renewals fail, never act after the store's lease can have ended,
//! and a scope lost and taken again never runs one job twice at once.
//! (`FaultyProvider` delays answers and fails renewals on command.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock::admin::LockAdmin;
use shedlock::{InMemoryLockProvider, LeaderElection, SchedulerLock, scheduler_lock};
use shedlock_test_support::faults::FaultyProvider;
use shedlock_test_support::scopes::install_default_for_scopes;

const SCOPE_LEASE: Duration = Duration::from_millis(1500);
const SWEEP: Duration = Duration::from_millis(100);

fn install() {
    install_default_for_scopes(SCOPE_LEASE, SWEEP);
}

/// When each leader (or run) started and ended, by who.
type Spans = Arc<Mutex<Vec<(&'static str, Instant, Option<Instant>)>>>;

/// Records the end of a span when dropped (a closure cancelled counts).
struct Span(Spans, usize);

impl Span {
    fn start(spans: &Spans, who: &'static str) -> Span {
        let mut list = spans.lock().unwrap_or_else(|err| panic!("{err}"));
        list.push((who, Instant::now(), None));
        Span(spans.clone(), list.len() - 1)
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Ok(mut list) = self.0.lock() {
            list[self.1].2 = Some(Instant::now());
        }
    }
}

fn assert_no_overlap(spans: &Spans) {
    let spans = spans.lock().unwrap_or_else(|err| panic!("{err}")).clone();
    for (i, (a, a_start, a_end)) in spans.iter().enumerate() {
        for (b, b_start, b_end) in spans.iter().skip(i + 1) {
            let a_end = a_end.unwrap_or_else(Instant::now);
            let b_end = b_end.unwrap_or_else(Instant::now);
            assert!(
                a_end <= *b_start || b_end <= *a_start,
                "{a} and {b} acted at once: {a} {:?}..{:?}, {b} {:?}..{:?} (from the first start)",
                Duration::ZERO,
                a_end - *a_start,
                b_start.saturating_duration_since(*a_start),
                b_end.saturating_duration_since(*a_start),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_answers_come_late_never_leads_past_its_lease() -> anyhow::Result<()> {
    let store = InMemoryLockProvider::new();
    let slow = FaultyProvider::new(store.clone().with_locked_by("slow"));
    // Every answer comes 400 ms late (the store acted on time), and no renewal gets through.
    slow.faults().delay_answers(Duration::from_millis(400));
    slow.faults().fail_renewals(true);
    let lease = Duration::from_secs(1);
    let spans = Spans::default();
    let first = LeaderElection::new(slow, "late-leader", lease)?;
    let second = LeaderElection::new(store.with_locked_by("fast"), "late-leader", lease)?;
    let lead = |who: &'static str| {
        let spans = spans.clone();
        move |leadership: shedlock::Leadership| async move {
            let _span = Span::start(&spans, who);
            tokio::select! {
                () = leadership.lost() => {}
                () = tokio::time::sleep(Duration::from_millis(1500)) => {}
            }
        }
    };
    let (_, _) = tokio::join!(first.run(lead("slow")), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        second.run(lead("fast")).await
    });
    assert_no_overlap(&spans);
    Ok(())
}

/// A run of the scope's job, which checks that the store still shows the
/// scope's lease held by this replica.
#[scheduler_lock(name = "late-scope-job", scope = "late-scope", provider = replica)]
async fn late_scope_job<P: shedlock::LockProvider>(
    replica: &P,
    store: &InMemoryLockProvider,
    stale_runs: &AtomicUsize,
    runs: &AtomicUsize,
) {
    runs.fetch_add(1, Ordering::SeqCst);
    let held = store
        .lock_state("scope:late-scope")
        .await
        .is_ok_and(|state| {
            state
                .holders
                .iter()
                .any(|holder| holder.locked_by == "slow")
        });
    if !held {
        stale_runs.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_whose_answers_come_late_runs_nothing_past_its_lease() -> anyhow::Result<()> {
    install();
    let store = InMemoryLockProvider::new();
    let slow = FaultyProvider::new(store.clone().with_locked_by("slow"));
    // Every answer comes 400 ms late (the store acted on time), and no
    // renewal gets through: the scope's lease ends 1.5 s after each claim
    // was sent, and a claim's ownership is known 0.8 s after it was sent.
    slow.faults().delay_answers(Duration::from_millis(400));
    slow.faults().fail_renewals(true);
    let (stale_runs, runs) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let _ = late_scope_job(&slow, &store, &stale_runs, &runs).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(runs.load(Ordering::SeqCst) > 0, "the scope never ran");
    assert_eq!(
        stale_runs.load(Ordering::SeqCst),
        0,
        "runs started after the scope's lease had ended ({} runs)",
        runs.load(Ordering::SeqCst)
    );
    Ok(())
}

#[scheduler_lock(name = "retaken-job", scope = "retaken", provider = replica)]
async fn retaken_job(
    replica: &InMemoryLockProvider,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) {
    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_lost_and_taken_again_never_runs_one_job_twice_at_once() -> anyhow::Result<()> {
    install();
    let replica = InMemoryLockProvider::new().with_locked_by("owner");
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // A tick every 100 ms for 2.5 s, each on a task of its own: the first
    // starts a 2 s run; an operator frees the scope while it goes on.
    let mut ticks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut released = false;
    while started.elapsed() < Duration::from_millis(2500) {
        let (ticking, running, most) = (replica.clone(), running.clone(), most.clone());
        ticks.spawn(async move { retaken_job(&ticking, running, most).await });
        if !released && started.elapsed() >= Duration::from_millis(300) {
            assert_eq!(replica.force_release("scope:retaken").await?, 1);
            released = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while ticks.join_next().await.is_some() {}
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two runs of one job at once on one replica"
    );
    Ok(())
}

/// A scoped run that watches its scope from the inside: once this replica no
/// longer owns it, whether the run is told its lease is lost.
#[scheduler_lock(name = "lag-job", scope = "lag", provider = replica)]
async fn watching_its_scope(replica: &InMemoryLockProvider) -> (bool, bool) {
    loop {
        // Polled again at once: the first poll after the keeper signals the
        // loss runs this body before the run's watcher marks it.
        tokio::task::yield_now().await;
        let owned = SchedulerLock::owned_scopes()
            .iter()
            .any(|owned| owned.scope == "lag");
        if !owned {
            let extended =
                shedlock::extend_active_lock(Duration::from_secs(5), Duration::ZERO).await;
            return (shedlock::is_lease_lost(), extended.is_err());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_run_hears_of_its_lost_scope_in_the_same_poll() -> anyhow::Result<()> {
    install();
    let replica = InMemoryLockProvider::new().with_locked_by("owner");
    let run = tokio::spawn({
        let replica = replica.clone();
        async move { watching_its_scope(&replica).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(replica.force_release("scope:lag").await?, 1);
    let (lost, refused) = tokio::time::timeout(SCOPE_LEASE, run)
        .await??
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| anyhow::anyhow!("the scoped job did not run"))?;
    assert!(lost, "is_lease_lost() said the lost scope was held");
    assert!(refused, "extend_active_lock() succeeded on a lost scope");
    Ok(())
}
