//! Ticks in one process: a run claims the tick it is for, so a second run of
//! the same tick (a replica whose clock or scheduler is 400 ms late) skips
//! though the lock is free, where a plain lock lets it run again; the cron
//! helper claims the schedule's instant, not the clock's now, and catches up
//! on a missed tick once across replicas when asked to.

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

#[scheduler_lock(name = "minute-report", lock_at_most_for = "10s", provider = locks)]
async fn minute_report(locks: &InMemoryLockProvider, runs: Arc<Mutex<Vec<SystemTime>>>) {
    if let Ok(mut runs) = runs.lock() {
        runs.push(SystemTime::now());
    }
}

/// Misfire "run once": the last tick of a schedule of minutes was missed
/// (its run before was 5 minutes earlier). Three replicas make the job at
/// once, two of them catching up: the job runs once at once for that tick,
/// which reports the 4 ticks before it as missed; the replica that does not
/// catch up runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_tick_is_caught_up_once_by_the_replicas_that_start() -> anyhow::Result<()> {
    use shedlock::admin::{LockAdmin, RunOutcome};
    let locks = InMemoryLockProvider::new();
    let runs: Arc<Mutex<Vec<SystemTime>>> = Arc::default();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let this_minute = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() / 60 * 60);
    let five_before = this_minute - Duration::from_secs(5 * 60);
    let every_minute = shedlock::missed_every(Duration::from_secs(60));
    let before = minute_report(&locks, runs.clone());
    run_for_tick(five_before, every_minute, before).await?;

    let within = Duration::from_secs(61);
    let replicas = [
        LockedJobs::new().catching_up(within),
        LockedJobs::new().catching_up(within),
        LockedJobs::new(),
    ];
    for jobs in &replicas {
        let (locks, runs) = (locks.clone(), runs.clone());
        jobs.annotated_job("0 * * * * *", move || {
            minute_report_job(locks.clone(), runs.clone())
        })?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for jobs in &replicas {
        jobs.stop().await;
    }
    let ran = runs.lock().ok().context("the runs' mutex")?.len();
    ensure!(
        ran == 2,
        "the tick before and one catch-up should have run, not {ran} runs"
    );
    let history = locks.run_history("minute-report").await?;
    let outcomes: Vec<RunOutcome> = history.iter().map(|run| run.outcome).collect();
    ensure!(
        outcomes == [RunOutcome::Ok, RunOutcome::Missed, RunOutcome::Ok],
        "{history:?}"
    );
    ensure!(history[1].missed_ticks == Some(4), "{history:?}");
    ensure!(
        locks.last_tick("minute-report").await? == Some(this_minute),
        "the catch-up claimed another tick"
    );
    Ok(())
}

async fn minute_report_job(
    locks: InMemoryLockProvider,
    runs: Arc<Mutex<Vec<SystemTime>>>,
) -> Result<Option<()>, shedlock::LockError> {
    minute_report(&locks, runs).await
}

#[scheduler_lock(name = "two-second-report", lock_at_most_for = "10s", every = "2s", misfire = "run_once", provider = locks)]
async fn catching_up_report(locks: &InMemoryLockProvider) {}

/// `misfire = "run_once"`: a call nearer the next tick than the last one
/// runs for the last one when no replica claimed it, then a later call for
/// the next one; a third call of the same two ticks skips.
#[tokio::test]
async fn a_call_catches_up_on_the_last_tick_of_its_interval_once() -> anyhow::Result<()> {
    use shedlock::admin::LockAdmin;
    let locks = InMemoryLockProvider::new();
    // Into the second half of a two-second interval, well before its end.
    let into = |now: Duration| now.as_millis() % 2_000;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    if !(1_100..1_600).contains(&into(now)) {
        let wait = (2_000 + 1_200 - into(now)) % 2_000;
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait)?)).await;
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let last = SystemTime::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(now.as_millis() / 2_000 * 2_000)?);
    let next = last + Duration::from_secs(2);
    // Each call: whether it runs, and the last tick claimed after it.
    let expected = [(true, Some(last)), (true, Some(next)), (false, Some(next))];
    for (call, (runs, tick)) in expected.into_iter().enumerate() {
        let ran = catching_up_report(&locks).await?.is_some();
        let claimed = locks.last_tick("two-second-report").await?;
        ensure!(
            (ran, claimed) == (runs, tick),
            "call {call}: ran {ran}, last tick {claimed:?}; the last tick {last:?}, the next {next:?}"
        );
    }
    Ok(())
}
