//! Network faults between a provider and Redis, injected by a TCP proxy
//! (`support/proxy.rs`): replies delayed past the response timeout,
//! connections reset in the middle of a release, and a black hole under a
//! keep-alive job. A second provider talks to the real port to see what the
//! server holds.

#[path = "support/workers.rs"]
mod workers;

use shedlock_test_support::conformance::assert_lease_lost;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use shedlock_core::{
    ExecutionOptions, LockConfiguration, LockError, LockProvider, LockingTaskExecutor, lease_lost,
};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::proxy::{Direction, FaultProxy};
use shedlock_test_support::redis::RedisServer;
use tokio::sync::OnceCell;
use workers::{connection, owned_server, pttl};

const RESPONSE_TIMEOUT: Duration = Duration::from_millis(200);

fn upstream(server: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// A provider that reaches Redis through `proxy`, with a short response timeout.
async fn through(proxy: &FaultProxy) -> RedisLockProvider {
    let client = redis::Client::open(proxy.url()).unwrap();
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_millis(500)));
    RedisLockProvider::new_with_config(client, config)
        .await
        .unwrap()
        .with_locked_by("proxied")
}

/// A provider on the server's real port.
async fn direct(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url())
        .await
        .unwrap()
        .with_locked_by("direct")
}

/// A server this test owns, a fault proxy in front of it, a provider
/// through the proxy and one on the server's real port.
async fn network() -> (
    RedisServer,
    FaultProxy,
    RedisLockProvider,
    RedisLockProvider,
) {
    let server = owned_server();
    let proxy = FaultProxy::start(upstream(&server)).await;
    let proxied = through(&proxy).await;
    let direct = direct(&server).await;
    (server, proxy, proxied, direct)
}

fn config(name: &str, lock_at_most_for: Duration) -> LockConfiguration {
    LockConfiguration::new(name, lock_at_most_for, Duration::ZERO).unwrap()
}

async fn get(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

/// Jobs that fail the test if two of them ever run at once.
#[derive(Default)]
struct Exclusive {
    running: AtomicBool,
    runs: AtomicUsize,
}

impl Exclusive {
    async fn run(&self, who: &str, for_: Duration) {
        assert!(
            !self.running.swap(true, Ordering::SeqCst),
            "{who} ran while another job held the same lock"
        );
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(for_).await;
        self.running.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_reply_delayed_past_the_response_timeout_is_reported_and_its_lease_released() {
    let (server, proxy, proxied, direct) = network().await;
    let proxied = LockingTaskExecutor::new(proxied);
    let mut observer = connection(server.url()).await;
    let lock_at_most_for = Duration::from_secs(60);
    let warm_up = config("delayed-reply-warm-up", lock_at_most_for);
    let config = config("delayed-reply", lock_at_most_for);
    let key = "job-lock:default:delayed-reply";
    let jobs = Exclusive::default();

    // Load the scripts first: on a fresh server the first EVALSHA gets NOSCRIPT,
    // and with its reply delayed, the script would never run at all.
    let guard = proxied.provider().try_lock(&warm_up).await.unwrap();
    guard
        .expect("the warm-up lock is free")
        .unlock()
        .await
        .unwrap();

    // Commands reach the server at once; their replies take 1 s, five times
    // the response timeout. So the acquisition runs, and its reply is lost.
    proxy.set_latency(Direction::ToClient, Duration::from_secs(1));
    let proxied_lease_seen = Arc::new(std::sync::Mutex::new(None::<(Instant, Instant)>));
    let watching = AtomicBool::new(true);
    let observe = async {
        while watching.load(Ordering::SeqCst) {
            if get(&mut observer, key)
                .await
                .is_some_and(|value| value.contains("@proxied;"))
            {
                let now = Instant::now();
                let mut seen = proxied_lease_seen.lock().unwrap();
                *seen = Some((seen.map_or(now, |(first, _)| first), now));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let attempt_and_take_over = async {
        let started = Instant::now();
        let result = proxied
            .execute(&config, jobs.run("the proxied job", Duration::ZERO))
            .await;
        let failed_at = Instant::now();
        proxy.set_latency(Direction::ToClient, Duration::ZERO);

        // The direct provider gets the lock once the lost acquisition's lease is released.
        let deadline = failed_at + Duration::from_secs(10);
        let taken_at = loop {
            if let Some(guard) = direct.try_lock(&config).await.unwrap() {
                let taken_at = Instant::now();
                jobs.run("the direct job", Duration::from_millis(600)).await;
                // The proxied provider's background release retries (if any)
                // never touched this lease.
                assert!(
                    get(&mut connection(server.url()).await, key)
                        .await
                        .is_some_and(|value| value.contains("@direct;")),
                    "the direct holder's lock was removed under it"
                );
                guard.unlock().await.unwrap();
                break taken_at;
            }
            assert!(
                Instant::now() < deadline,
                "the lost acquisition's lease was not released within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        watching.store(false, Ordering::SeqCst);
        (result, started, failed_at, taken_at)
    };
    let ((), (result, started, failed_at, taken_at)) = tokio::join!(observe, attempt_and_take_over);

    let err = result.expect_err("the acquisition succeeded although its reply was delayed 1 s");
    assert!(
        err.is_store_failure(),
        "expected AcquisitionUncertain or a store error, got {err:?}"
    );
    let released = match &err {
        LockError::AcquisitionUncertain { released, .. } => format!("released: {released}"),
        other => format!("a store error: {other}"),
    };
    assert_eq!(
        jobs.runs.load(Ordering::SeqCst),
        1,
        "only the direct job may have run"
    );
    let Some((first_seen, last_seen)) = *proxied_lease_seen.lock().unwrap() else {
        panic!("the delayed acquisition never took a lease on the server; the fault missed");
    };
    assert!(
        taken_at > last_seen,
        "the direct provider got the lock while the lost acquisition's lease stood"
    );
    println!(
        "delayed reply: the call failed after {:?} ({released}); the lost acquisition's lease \
         was on the server from +{:?} to +{:?}; the direct provider got the lock {:?} after the \
         failure (lock_at_most_for {lock_at_most_for:?})",
        failed_at - started,
        first_seen - started,
        last_seen - started,
        taken_at.saturating_duration_since(failed_at)
    );
    assert!(taken_at - failed_at < Duration::from_secs(5));
}

#[tokio::test]
async fn a_release_whose_connection_is_reset_is_sent_again_and_frees_the_lock_at_once() {
    let (_server, proxy, proxied, direct) = network().await;
    let config = config("reset-release", Duration::from_secs(60));

    let guard = proxied
        .try_lock(&config)
        .await
        .unwrap()
        .expect("the lock is free");
    let accepted = proxy.accepted();
    // The release command is dropped and the connection reset under it.
    proxy.reset_on_next_command();
    guard
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("the reset release was not sent again: {err}"));
    assert!(
        !proxy.reset_pending(),
        "the release sent nothing through the proxy"
    );
    assert!(
        proxy.accepted() > accepted,
        "the release was not sent again on a new connection"
    );
    assert!(
        direct.try_lock(&config).await.unwrap().is_some(),
        "the lock was not free right after the release"
    );
}

#[tokio::test]
async fn a_release_that_cannot_get_through_leaves_the_lease_to_end_at_lock_at_most_for() {
    let (server, proxy, proxied, direct) = network().await;
    let waiter = LockingTaskExecutor::new(direct);
    let mut observer = connection(server.url()).await;
    let lock_at_most_for = Duration::from_millis(1500);
    let config = config("lost-release", lock_at_most_for);
    let key = "job-lock:default:lost-release";

    let requested_at = Instant::now();
    let guard = proxied
        .try_lock(&config)
        .await
        .unwrap()
        .expect("the lock is free");
    let sent = Instant::now();
    let ttl = pttl(&mut observer, key).await;
    assert!(ttl > 0, "the lease is not on the server (PTTL {ttl})");
    let lease_end_earliest = sent + Duration::from_millis(ttl.unsigned_abs() - 1);

    // Nothing gets through any more: the release times out.
    proxy.set_black_hole(true);
    let err = guard
        .unlock()
        .await
        .expect_err("the release succeeded although nothing got through");
    assert!(err.is_store_failure(), "{err:?}");
    assert!(
        get(&mut observer, key)
            .await
            .is_some_and(|value| value.contains("@proxied;")),
        "the release reached the server; the fault missed"
    );

    let guard = waiter
        .lock_waiting(&config, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the lease never ended");
    let taken_at = Instant::now();
    println!(
        "release lost: it failed with: {err}; the direct provider got the lock {:?} after the \
         acquisition (lock_at_most_for {lock_at_most_for:?}), {:?} after the server's lease end",
        taken_at - requested_at,
        taken_at.saturating_duration_since(lease_end_earliest)
    );
    assert!(
        taken_at >= lease_end_earliest,
        "the lock was taken before the lease ended"
    );
    assert!(
        taken_at - requested_at <= lock_at_most_for + Duration::from_millis(300),
        "the lease outlived lock_at_most_for: the lock was free only after {:?}",
        taken_at - requested_at
    );
    guard.unlock().await.unwrap();
}

#[tokio::test]
async fn a_black_hole_under_keep_alive_tells_the_job_and_cancels_it_when_asked() {
    let (_server, proxy, proxied, direct) = network().await;
    let proxied = LockingTaskExecutor::new(proxied);
    let lock_at_most_for = Duration::from_millis(1500);
    let (told, cancelled) = (
        config("black-hole-told", lock_at_most_for),
        config("black-hole-cancelled", lock_at_most_for),
    );
    let keep_alive = ExecutionOptions::new().keep_alive(true);
    let black_hole_at = OnceCell::new();

    let started = Instant::now();
    let told_job = proxied.execute_with(&told, keep_alive, async {
        tokio::time::timeout(Duration::from_secs(10), lease_lost())
            .await
            .expect("the job was never told it lost its lease");
        Instant::now()
    });
    let cancelled_job = async {
        let result = proxied
            .execute_with(
                &cancelled,
                keep_alive.cancel_on_lease_loss(true),
                tokio::time::sleep(Duration::from_secs(20)),
            )
            .await;
        (result, Instant::now())
    };
    let black_hole = async {
        // After the first extension (a third of the lease in), before the second.
        tokio::time::sleep(Duration::from_millis(800)).await;
        proxy.set_black_hole(true);
        let _ = black_hole_at.set(Instant::now());
    };
    let (told_result, (cancelled_result, cancelled_at), ()) =
        tokio::join!(told_job, cancelled_job, black_hole);
    let black_hole_at = *black_hole_at.get().unwrap();

    let told_at = told_result
        .unwrap()
        .expect("the lock was free, the job should have run");
    assert_lease_lost(&cancelled_result);
    println!(
        "black hole under keep-alive: black hole at +{:?}; the job was told at +{:?} ({:?} \
         after the black hole); the cancelled job returned LeaseLost at +{:?} (lock_at_most_for \
         {lock_at_most_for:?}, extended every {:?})",
        black_hole_at - started,
        told_at - started,
        told_at.saturating_duration_since(black_hole_at),
        cancelled_at - started,
        lock_at_most_for / 3
    );
    for at in [told_at, cancelled_at] {
        // Keep-alive extended the lease before the black hole: without it the
        // loss would come at lock_at_most_for after the start.
        assert!(
            at - started > lock_at_most_for + Duration::from_millis(200),
            "the loss came {:?} after the start: keep-alive never extended the lease",
            at - started
        );
        assert!(
            at.saturating_duration_since(black_hole_at) < lock_at_most_for + Duration::from_secs(1),
            "the loss was noticed only {:?} after the black hole",
            at.saturating_duration_since(black_hole_at)
        );
    }
    // The server agrees: both leases ended there, and another holder gets them.
    let waiter = LockingTaskExecutor::new(direct);
    for config in [&told, &cancelled] {
        let guard = waiter
            .lock_waiting(config, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            guard.is_some(),
            "the server still holds '{}' after the job was told its lease was lost",
            config.name()
        );
    }
    proxy.set_black_hole(false);
}

/// A release after a run reaches the server, which records the run, and its
/// reply is lost with the connection: the client sends it again, and the
/// run is still recorded once, as it ended (not also as a lost lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_release_records_its_run_once() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(upstream(&server)).await;
    let provider = through(&proxy).await.with_run_history(true);
    let executor = LockingTaskExecutor::new(provider);
    let config = config("resent-release", Duration::from_secs(30));
    // A first run loads the release script, so the release below runs at
    // its first copy rather than answering NOSCRIPT.
    let warm_up = executor.execute(&config, async {}).await;
    assert!(matches!(warm_up, Ok(Some(()))), "{warm_up:?}");
    let ran = executor
        .execute(&config, async {
            // The next command is the release.
            proxy.reset_after_next_command();
        })
        .await;
    assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    let history = shedlock_core::LockAdmin::run_history(&direct(&server).await, "resent-release")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let outcomes: Vec<_> = history.iter().map(|run| run.outcome).collect();
    assert_eq!(
        outcomes,
        vec![shedlock_core::RunOutcome::Ok, shedlock_core::RunOutcome::Ok],
        "one run, recorded once: {history:?}"
    );
    // The history expires 30 days after the last run, so the histories of
    // per-resource names that stopped running go by themselves.
    let ttl = server.command("PTTL {job-lock:default:resent-release}:runs");
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap_or(-1);
    assert!(
        (1..=2_592_000_000).contains(&ttl),
        "the run history's time to live: {ttl} ms"
    );
}
