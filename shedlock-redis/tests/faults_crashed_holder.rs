//! A holder process killed (SIGKILL) in the middle of its job: nobody gets
//! the lock before its lease ends on the server (`lock_at_most_for` after the
//! holder's acquisition), and a waiter gets it right after.
//!
//! The holder is this test binary again, running only `holder_process` (an
//! ignored test that does nothing unless `HOLDER_URL_ENV` is set).

#[path = "support/workers.rs"]
mod workers;

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;
use workers::{
    LeaseEnd, hold_and_report, lease_end, push_event, spawn_until_first_event, worker_provider,
};

const LOCK: &str = "crashed-holder";
const LOCK_KEY: &str = "job-lock:default:crashed-holder";
const LEASE: Duration = Duration::from_secs(2);
/// The holder pushes `held:<pid>` here once its job runs.
const EVENTS: &str = "crashed-holder-events";
/// How often the impatient contender tries.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How soon after the lease end the lock must be taken.
const HANDOFF_BOUND: Duration = Duration::from_millis(200);

const HOLDER_URL_ENV: &str = "SHEDLOCK_FAULTS_HOLDER_URL";

fn config() -> LockConfiguration {
    LockConfiguration::new(LOCK, LEASE, Duration::ZERO)
        .unwrap_or_else(|err| panic!("configuration rejected: {err}"))
}

#[tokio::test]
async fn a_killed_holders_lease_ends_at_lock_at_most_for_and_a_waiter_gets_it_at_once() {
    let server = RedisServer::start();
    let never = "the holder never reported holding the lock";
    let (mut events, mut holder, event) = spawn_until_first_event(
        server.url(),
        "holder_process",
        HOLDER_URL_ENV,
        EVENTS,
        never,
    )
    .await;
    let reported_at = Instant::now();
    assert_eq!(event, format!("held:{}", holder.pid()));

    // Mid-job, the holder dies without releasing anything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.kill();

    // The server's own clock says when the lease ends: between `sent + ttl`
    // and `received + ttl` on ours.
    let whose = "after the holder died its";
    let LeaseEnd {
        earliest: lease_end_earliest,
        latest: lease_end_latest,
        read_took,
        ..
    } = lease_end(&mut events, LOCK_KEY, LEASE, whose).await;
    // The holder took the lock before it reported: its lease cannot end later than that.
    assert!(
        lease_end_earliest <= reported_at + LEASE,
        "the lease ends {:?} after the holder reported it, later than lock_at_most_for",
        lease_end_earliest - reported_at
    );

    let (waiter, prober) = (
        RedisLockProvider::connect(server.url()).await.unwrap(),
        RedisLockProvider::connect(server.url()).await.unwrap(),
    );
    let waiter = LockingTaskExecutor::new(waiter);
    let config = config();
    let acquisitions = Arc::new(Mutex::new(Vec::new()));
    let wait_until = lease_end_latest + Duration::from_secs(1);

    let waiting = async {
        let wait_for = wait_until.saturating_duration_since(Instant::now());
        let guard = waiter.lock_waiting(&config, wait_for).await.unwrap();
        if guard.is_some() {
            acquisitions
                .lock()
                .unwrap()
                .push(("waiter", Instant::now()));
        }
        guard
    };
    let probing = async {
        let mut refused_before_end = 0;
        while Instant::now() < wait_until {
            if let Some(guard) = prober.try_lock(&config).await.unwrap() {
                acquisitions
                    .lock()
                    .unwrap()
                    .push(("prober", Instant::now()));
                return (Some(guard), refused_before_end);
            }
            if Instant::now() < lease_end_earliest {
                refused_before_end += 1;
            }
            if !acquisitions.lock().unwrap().is_empty() {
                // The waiter has it; keep trying a little to show it is held.
                tokio::time::sleep(PROBE_EVERY).await;
                if prober.try_lock(&config).await.unwrap().is_some() {
                    acquisitions
                        .lock()
                        .unwrap()
                        .push(("prober", Instant::now()));
                }
                return (None, refused_before_end);
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        (None, refused_before_end)
    };
    let (waiter_guard, (prober_guard, refused_before_end)) = tokio::join!(waiting, probing);

    let acquisitions = acquisitions.lock().unwrap().clone();
    assert_eq!(
        acquisitions.len(),
        1,
        "expected exactly one of waiter and prober to get the lock: {acquisitions:?}"
    );
    let (who, at) = acquisitions[0];
    assert!(
        refused_before_end >= 10,
        "the prober was refused only {refused_before_end} times before the lease end"
    );
    // A command whose reply came back at `at` ran on the server before it.
    assert!(
        at >= lease_end_earliest,
        "the {who} got the lock {:?} before the crashed holder's lease ended",
        lease_end_earliest - at
    );
    let after_end = at - lease_end_earliest;
    println!(
        "crashed holder: lease end measured by PTTL (uncertainty {:?}); the {who} got the lock \
         {after_end:?} after it; the prober was refused {refused_before_end} times before it",
        read_took
    );
    assert!(
        after_end <= HANDOFF_BOUND + read_took,
        "the {who} got the lock only {after_end:?} after the lease end"
    );
    for guard in [waiter_guard, prober_guard].into_iter().flatten() {
        guard.unlock().await.unwrap();
    }
}

/// The holder: takes the lock, reports it, and runs a job that never ends
/// (the test kills this process during it).
#[tokio::test]
#[ignore = "a worker process of a_killed_holders_lease_ends_at_lock_at_most_for_and_a_waiter_gets_it_at_once"]
async fn holder_process() -> Result<(), Box<dyn Error>> {
    let Some((url, provider)) = worker_provider(HOLDER_URL_ENV, None).await? else {
        return Ok(());
    };
    hold_and_report(provider, &url, &config(), async |events| {
        push_event(events, EVENTS, &format!("held:{}", std::process::id())).await?;
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    })
    .await
}
