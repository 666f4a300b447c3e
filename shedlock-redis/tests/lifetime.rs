//! Lock lifetime on Redis: release notifications, lease loss under keep-alive.

use std::time::{Duration, Instant};

use shedlock_core::{
    ExecutionOptions, LockConfiguration, LockError, LockProvider, LockingTaskExecutor,
    is_lease_lost, lease_lost,
};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::conformance::{
    assert_lease_lost, assert_lease_lost_within, assert_release_published, held_and_watched, unlock,
};
use shedlock_test_support::redis::RedisServer;

/// A 20 s job under `name` with keep-alive, cancelled when its lease is lost.
async fn long_job_cancelled_on_loss(
    url: String,
    name: &str,
    lock_at_most_for: Duration,
) -> Result<Option<()>, LockError> {
    let executor = LockingTaskExecutor::new(RedisLockProvider::connect(&url).await.unwrap());
    let config = LockConfiguration::new(name, lock_at_most_for, Duration::ZERO).unwrap();
    let options = ExecutionOptions::new()
        .keep_alive(true)
        .cancel_on_lease_loss(true);
    executor
        .execute_with(
            &config,
            options,
            tokio::time::sleep(Duration::from_secs(20)),
        )
        .await
}

/// What [`long_job_cancelled_on_loss`] under `name` returned, `fault`
/// happening `after` into it.
async fn loss_under_a_long_job(
    url: &str,
    name: &str,
    lock_at_most_for: Duration,
    after: Duration,
    fault: impl FnOnce(),
) -> Result<Option<()>, LockError> {
    let job = long_job_cancelled_on_loss(url.to_owned(), name, lock_at_most_for);
    let fault = async {
        tokio::time::sleep(after).await;
        fault();
    };
    let (result, ()) = tokio::join!(job, fault);
    result
}

async fn connect(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url()).await.unwrap()
}

#[tokio::test]
async fn a_release_is_published_to_waiters() {
    let server = RedisServer::start();
    let (holder, waiter) = (connect(&server).await, connect(&server).await);
    let config =
        LockConfiguration::new("published", Duration::from_secs(30), Duration::ZERO).unwrap();
    // A waiter's failed attempt (it marks the holder) asks for the notification.
    let (guard, mut releases) = held_and_watched(&holder, &waiter, &config).await;
    unlock(guard).await;
    assert_release_published(&mut releases, "the release was not published to the waiter").await;
}

#[tokio::test]
async fn deleting_the_key_under_a_keep_alive_job_signals_loss_within_a_third_of_the_lease() {
    let server = RedisServer::start();
    let executor = LockingTaskExecutor::new(connect(&server).await);
    let lock_at_most_for = Duration::from_secs(3);
    let config = LockConfiguration::new("deleted", lock_at_most_for, Duration::ZERO).unwrap();
    let options = ExecutionOptions::new().keep_alive(true);
    let deleted_at = tokio::sync::OnceCell::new();
    let job = executor.execute_with(&config, options, async {
        tokio::time::timeout(Duration::from_secs(20), lease_lost())
            .await
            .expect("the job was never told it lost its lease");
        assert!(is_lease_lost());
        deleted_at.get().map(Instant::elapsed)
    });
    let delete = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            server
                .command("DEL job-lock:default:deleted")
                .starts_with(":1")
        );
        let _ = deleted_at.set(Instant::now());
    };
    let (ran, ()) = tokio::join!(job, delete);
    let noticed_after = ran
        .unwrap()
        .unwrap()
        .expect("loss signalled before the key was deleted");
    // Keep-alive renews every third of the lease; the first renewal after the
    // deletion finds the key gone.
    assert!(
        noticed_after <= lock_at_most_for / 3 + Duration::from_millis(500),
        "loss noticed {noticed_after:?} after the deletion"
    );
}

#[tokio::test]
async fn another_holder_taking_the_key_cancels_a_job_that_asked_for_it() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(900);
    let result = loss_under_a_long_job(
        server.url(),
        "stolen",
        lease,
        Duration::from_millis(100),
        || {
            server.command("SET job-lock:default:stolen someone-else PX 60000");
        },
    )
    .await;
    assert_lease_lost(&result);
    // The other holder's lock was not touched by the release after cancellation.
    assert!(
        server
            .command("GET job-lock:default:stolen")
            .contains("someone-else")
    );
}

#[tokio::test]
async fn redis_unreachable_past_the_lease_end_signals_loss() {
    let mut server = RedisServer::start();
    let (url, lease) = (server.url().to_owned(), Duration::from_millis(1500));
    let started = Instant::now();
    let result = loss_under_a_long_job(
        &url,
        "unreachable",
        lease,
        Duration::from_millis(200),
        || server.kill(),
    )
    .await;
    assert_lease_lost_within(&result, started, Duration::from_secs(10));
}

/// A tick record outlives the lease, and lives 30 days past its last claim
/// (as a run history does): the records of names no longer used go by
/// themselves.
#[tokio::test]
async fn a_tick_record_outlives_the_lease_and_expires_thirty_days_after_its_claim() {
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let tick = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let config = LockConfiguration::new("ticking", Duration::from_secs(10), Duration::ZERO)
        .unwrap()
        .for_tick(tick);
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    unlock(guard).await;
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left: i64 = redis::cmd("PTTL")
        .arg("{job-lock:default:ticking}:tick")
        .query_async(&mut redis)
        .await
        .unwrap();
    let thirty_days = 30 * 24 * 3600 * 1000;
    assert!(
        (thirty_days - 60_000..=thirty_days).contains(&left),
        "the tick record lives {left} ms"
    );
    assert!(
        provider.try_lock(&config).await.unwrap().is_none(),
        "the tick ran twice"
    );
}
