//! Clock skew: processes whose wall clocks are two hours ahead or behind
//! keep mutual exclusion, because leases run on the server's clock (Redis
//! key expiry), never on a client's.
//!
//! The skewed processes are this test binary again, run under libfaketime
//! (`LD_PRELOAD` with `FAKETIME=+2h` / `-2h`), which they prove by reporting
//! their `SystemTime::now()`. Install it with `apt-get install -y faketime`.

#[path = "support/workers.rs"]
mod workers;

use std::error::Error;
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::{Worker, now_ms};
use workers::{connection, first_event, hold_and_report, lease_end, push_event, worker_provider};

const LOCK: &str = "skewed-clocks";
const LOCK_KEY: &str = "job-lock:default:skewed-clocks";
const LEASE: Duration = Duration::from_secs(2);
/// How long the skewed holder's job runs: past its lease, so the lease's end
/// comes from the server, not from a release.
const HOLDER_JOB: Duration = Duration::from_secs(3);
/// Where the workers report `held <epoch_ms>`, `refused <epoch_ms>` or `acquired <epoch_ms>`.
const EVENTS: &str = "skewed-clocks-events";
/// Set by the holder once its job runs; the contender waits for it.
const HOLDING: &str = "skewed-clocks-holding";
const SKEW_MS: i64 = 2 * 3600 * 1000;
/// How far a worker's reported clock may be from the expected skew
/// (the report travels through Redis and the machine may be loaded).
const SKEW_TOLERANCE_MS: i64 = 60_000;

const URL_ENV: &str = "SHEDLOCK_CLOCKS_URL";

fn config() -> LockConfiguration {
    LockConfiguration::new(LOCK, LEASE, Duration::ZERO)
        .unwrap_or_else(|err| panic!("configuration rejected: {err}"))
}

/// Starts `test` of this binary with its clock moved by `offset` (e.g. `+2h`).
fn skewed_worker(test: &str, offset: &str, url: &str) -> Worker {
    Worker::spawn_skewed(test, &[(URL_ENV, url)], offset)
}

/// Waits for a worker's `<what> <epoch_ms>` report; returns `<what>` and the
/// worker's clock minus ours. Fails the test with the workers' output when
/// none comes (`never` says what did not happen).
async fn report(
    events: &mut redis::aio::MultiplexedConnection,
    workers: [&mut Worker; 2],
    never: &str,
) -> (String, i64) {
    let event = first_event(events, EVENTS, workers, never).await;
    let ours = now_ms() as i64;
    let (what, at) = event
        .split_once(' ')
        .unwrap_or_else(|| panic!("malformed report {event:?}"));
    let theirs: i64 = at
        .parse()
        .unwrap_or_else(|_| panic!("malformed report {event:?}"));
    (what.to_owned(), theirs - ours)
}

fn assert_skew(who: &str, skew_ms: i64, expected_ms: i64) {
    assert!(
        (skew_ms - expected_ms).abs() < SKEW_TOLERANCE_MS,
        "the {who}'s clock is {skew_ms} ms off ours, expected about {expected_ms} ms: \
         libfaketime did not apply"
    );
}

#[tokio::test]
async fn clients_with_skewed_clocks_keep_exclusion_because_leases_run_on_the_servers_clock() {
    let server = RedisServer::start();
    let mut events = connection(server.url()).await;
    let provider = RedisLockProvider::connect(server.url())
        .await
        .unwrap()
        .with_locked_by("normal-clock");
    let config = config();

    let mut holder = skewed_worker("skewed_holder", "+2h", server.url());
    // Started at once, it waits for the holder's job to run before it tries.
    let mut behind = skewed_worker("skewed_contender", "-2h", server.url());

    let never = "the skewed holder never reported";
    let (what, holder_skew) = report(&mut events, [&mut holder, &mut behind], never).await;
    let reported_at = Instant::now();
    assert_eq!(what, "held", "the holder (+2h) reported {what:?}");
    assert_skew("holder", holder_skew, SKEW_MS);

    // The server's clock alone sets the lease's end.
    let lease = lease_end(&mut events, LOCK_KEY, LEASE, "the skewed holder's").await;
    let lease_end_earliest = lease.earliest;
    // The holder took the lock before it reported: its lease cannot end later than that.
    assert!(lease_end_earliest <= reported_at + LEASE);
    let value: String = redis::cmd("GET")
        .arg(LOCK_KEY)
        .query_async(&mut events)
        .await
        .unwrap();
    // `ADDED:<locked_at>@<locked_by>;id=<acquisition id>`
    let locked_at = value
        .strip_prefix("ADDED:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(locked_at, _)| locked_at.to_owned());

    // The process two hours behind is refused while the lease stands.
    let never = "the skewed contender never reported";
    let (what, behind_skew) = report(&mut events, [&mut behind, &mut holder], never).await;
    let behind_reported_at = Instant::now();
    assert_skew("contender", behind_skew, -SKEW_MS);
    assert_eq!(
        what, "refused",
        "the contender 2 h behind got the lock while the skewed holder's lease stood"
    );
    assert!(
        behind_reported_at < lease_end_earliest,
        "the contender tried only after the lease end ({:?} late): inconclusive, the machine \
         is too slow for this test",
        behind_reported_at - lease_end_earliest
    );

    // So is this process, with the right clock.
    assert!(
        provider.try_lock(&config).await.unwrap().is_none(),
        "the lock was free while the skewed holder's lease stood"
    );
    assert!(Instant::now() < lease_end_earliest);

    // And it gets the lock when the server ends the lease.
    let guard = LockingTaskExecutor::new(provider.clone())
        .lock_waiting(&config, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the skewed holder's lease never ended");
    let taken_at = Instant::now();
    assert!(
        taken_at >= lease_end_earliest,
        "the lock was taken {:?} before the lease end",
        lease_end_earliest - taken_at
    );
    let after_end = taken_at - lease_end_earliest;
    println!(
        "clocks: holder's clock {:+.3} h off (its lock value says locked_at {}), contender's \
         {:+.3} h off and refused; the server gave the {:?} lease {:?} to live right after the holder's report, and the \
         normal-clock waiter got the lock {after_end:?} after it ended",
        holder_skew as f64 / 3_600_000.0,
        locked_at.as_deref().unwrap_or("?"),
        behind_skew as f64 / 3_600_000.0,
        LEASE,
        lease.ttl
    );
    assert!(
        after_end <= Duration::from_millis(200) + lease.read_took,
        "the lock was free only {after_end:?} after the lease end"
    );

    // The skewed holder's job ends after its lease: its release must leave
    // the new holder's lock alone.
    let (status, output) = holder.finish(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "the skewed holder failed: {output}"
    );
    let (status, output) = behind.finish(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "the skewed contender failed: {output}"
    );
    let value: String = redis::cmd("GET")
        .arg(LOCK_KEY)
        .query_async(&mut events)
        .await
        .unwrap();
    assert!(
        value.contains("@normal-clock;"),
        "the late release of the skewed holder touched the new holder's lock: {value}"
    );
    guard.unlock().await.unwrap();
}

/// Takes the lock, reports `held <its clock>`, and runs past its lease.
#[tokio::test]
#[ignore = "a worker process of clients_with_skewed_clocks_keep_exclusion_because_leases_run_on_the_servers_clock"]
async fn skewed_holder() -> Result<(), Box<dyn Error>> {
    let Some((url, provider)) = worker_provider(URL_ENV, Some("clock-ahead")).await? else {
        return Ok(());
    };
    hold_and_report(provider, &url, &config(), async |events| {
        push_event(events, EVENTS, &format!("held {}", now_ms())).await?;
        // After the report, so the contender's report comes second.
        redis::cmd("SET")
            .arg(HOLDING)
            .arg(1)
            .query_async::<()>(events)
            .await?;
        tokio::time::sleep(HOLDER_JOB).await;
        Ok(())
    })
    .await
}

/// Waits for the holder's job to run, tries once, and reports `refused` or `acquired`
/// with its clock.
#[tokio::test]
#[ignore = "a worker process of clients_with_skewed_clocks_keep_exclusion_because_leases_run_on_the_servers_clock"]
async fn skewed_contender() -> Result<(), Box<dyn Error>> {
    let Some((url, provider)) = worker_provider(URL_ENV, Some("clock-behind")).await? else {
        return Ok(());
    };
    let mut events = connection(&url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The holder's job runs (its acquisition has ended, and its report is in).
    while !redis::cmd("EXISTS")
        .arg(HOLDING)
        .query_async::<bool>(&mut events)
        .await?
    {
        if Instant::now() > deadline {
            return Err("the holder's lock never appeared".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcome = match provider.try_lock(&config()).await? {
        Some(guard) => {
            guard.unlock().await?;
            "acquired"
        }
        None => "refused",
    };
    push_event(&mut events, EVENTS, &format!("{outcome} {}", now_ms())).await?;
    Ok(())
}
