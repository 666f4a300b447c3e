//! Ticks in one process: a run claims the tick it is for, so a second run of
//! the same tick (a replica whose clock or scheduler is 400 ms late) skips
//! though the lock is free, where a plain lock lets it run again; the cron
//! helper claims the schedule's instant, not the clock's now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use shedlock::cron::LockedJobs;
use shedlock::{InMemoryLockProvider, MissedBetween, run_for_tick, scheduler_lock};
use tokio_cron_scheduler::JobScheduler;

/// How far behind the late replica is.
const LATE: Duration = Duration::from_millis(400);

#[scheduler_lock(name = "tick-report", lock_at_most_for = "10s", provider = locks)]
async fn report(locks: &InMemoryLockProvider) {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A schedule that finds no missed ticks (these cases claim each tick once).
fn none_missed() -> MissedBetween {
    Arc::new(|_, _| None)
}

#[tokio::test]
async fn a_late_run_of_a_claimed_tick_skips_where_a_plain_lock_runs_it_again() {
    let locks = InMemoryLockProvider::new();
    let tick = SystemTime::now();
    let first = run_for_tick(tick, none_missed(), report(&locks)).await;
    assert!(
        matches!(first, Ok(Some(()))),
        "the tick's first run: {first:?}"
    );
    tokio::time::sleep(LATE).await;
    let late = run_for_tick(tick, none_missed(), report(&locks)).await;
    assert!(
        matches!(late, Ok(None)),
        "the late run of the same tick ran: {late:?}"
    );
    // Without the tick, the lock is free: the late replica would run it again.
    assert!(matches!(report(&locks).await, Ok(Some(()))));
    // The next tick runs.
    let next = run_for_tick(tick + Duration::from_secs(1), none_missed(), report(&locks)).await;
    assert!(matches!(next, Ok(Some(()))), "the next tick: {next:?}");
}

/// Two replicas in one process on one store, one of them 400 ms late for
/// every tick of a schedule of seconds (its job waits that long before the
/// locked call): each tick runs once. Runs are counted by the tick the
/// replica's scheduler fired for (the wall-clock second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_helper_claims_the_schedules_instant() -> anyhow::Result<()> {
    let locks = InMemoryLockProvider::new();
    let runs: Arc<Mutex<BTreeMap<u64, Vec<&'static str>>>> = Arc::default();
    let jobs = LockedJobs::new();
    let mut scheduler = JobScheduler::new().await?;
    for (replica, late) in [("on time", Duration::ZERO), ("late", LATE)] {
        let (locks, runs) = (locks.clone(), runs.clone());
        let job = jobs.annotated_job("* * * * * *", move || {
            let (locks, runs) = (locks.clone(), runs.clone());
            let second = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            async move {
                tokio::time::sleep(late).await;
                let ran = report(&locks).await?;
                if ran.is_some()
                    && let Ok(mut runs) = runs.lock()
                {
                    runs.entry(second).or_default().push(replica);
                }
                Ok(ran)
            }
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    jobs.stop().await;
    scheduler.shutdown().await?;
    let runs = runs.lock().ok().context("the runs' mutex")?.clone();
    ensure!(runs.len() >= 3, "too few ticks ran: {runs:?}");
    for (second, replicas) in &runs {
        ensure!(
            replicas.len() == 1,
            "tick {second} ran {} times: {replicas:?}",
            replicas.len()
        );
    }
    Ok(())
}
