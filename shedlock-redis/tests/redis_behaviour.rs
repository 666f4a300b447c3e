//! Behaviour specific to the Redis provider, against a private redis-server.

use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::Client;
use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;

fn config(name: &str, most: Duration, least: Duration) -> LockConfiguration {
    LockConfiguration::new(name, most, least).unwrap()
}

async fn connect(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url()).await.unwrap()
}

#[tokio::test]
async fn lock_key_and_value_follow_shedlocks_format() {
    let server = RedisServer::start();
    let provider = connect(&server).await.with_locked_by("replica-7");
    let guard = provider
        .try_lock(&config("format", Duration::from_secs(30), Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(provider.lock_key("format"), "job-lock:default:format");
    let value = server.command("GET job-lock:default:format");
    let value = value.lines().nth(1).unwrap_or_default();
    // `ADDED:<locked_at>@<locked_by>;id=<acquisition id>`: ShedLock's start, made unique.
    let (locked_at, rest) = value
        .strip_prefix("ADDED:")
        .and_then(|rest| rest.split_once('@'))
        .unwrap_or_else(|| panic!("unreadable value {value:?}"));
    assert!(
        humantime::parse_rfc3339(locked_at).is_ok(),
        "locked_at {locked_at:?} in {value:?}"
    );
    assert!(rest.starts_with("replica-7;id="), "{value:?}");
    let ttl: i64 = server.pttl("job-lock:default:format");
    assert!(
        ttl > 29_000 && ttl <= 30_000,
        "lease TTL {ttl} ms, expected about 30 s"
    );
    guard.unlock().await.unwrap();
    assert!(!server.exists("job-lock:default:format"));
}

#[tokio::test]
async fn key_prefix_and_environment_are_configurable() {
    let server = RedisServer::start();
    let staging = connect(&server)
        .await
        .with_key_prefix("locks")
        .with_environment("staging");
    let production = connect(&server)
        .await
        .with_key_prefix("locks")
        .with_environment("production");
    let config = config("shared-name", Duration::from_secs(30), Duration::ZERO);
    let a = staging.try_lock(&config).await.unwrap().unwrap();
    let b = production.try_lock(&config).await.unwrap();
    assert!(b.is_some(), "environments must not share locks");
    assert!(server.exists("locks:staging:shared-name"));
    a.unlock().await.unwrap();
    b.unwrap().unlock().await.unwrap();
}

#[tokio::test]
async fn an_acquisition_whose_reply_is_lost_is_released_and_reported() {
    let server = RedisServer::start();
    let client = Client::open(server.url()).unwrap();
    let impatient = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(100)))
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let provider = RedisLockProvider::new_with_config(client, impatient)
        .await
        .unwrap();
    let observer = connect(&server).await;
    let config = config("lost-reply", Duration::from_secs(60), Duration::ZERO);

    // The server holds the write for 400 ms: the command is sent and runs
    // later, after the client has given up waiting for the reply.
    assert!(server.command("CLIENT PAUSE 400 WRITE").starts_with("+OK"));
    let err = provider.try_lock(&config).await.unwrap_err();
    assert!(
        matches!(err, LockError::AcquisitionUncertain { .. }),
        "expected AcquisitionUncertain, got {err:?}"
    );
    assert!(err.to_string().contains("lost-reply"), "{err}");

    // The lease the lost command took is released long before its 60 s end.
    assert_freed_within_5s(
        &observer,
        &config,
        "the lost acquisition's lease was never released",
    )
    .await;
}

/// Fails unless `observer` gets the lock within 5 s (and then releases it).
async fn assert_freed_within_5s(
    observer: &RedisLockProvider,
    config: &LockConfiguration,
    failure: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(guard) = observer.try_lock(config).await.unwrap() {
            guard.unlock().await.unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn credentials_never_appear_in_errors_or_debug_output() {
    let secret = "s3cret-Passw0rd";
    // Nobody listens on this port: the connection error must not echo the URL.
    let port = shedlock_test_support::free_port();
    let err = RedisLockProvider::connect(&format!("redis://admin:{secret}@127.0.0.1:{port}"))
        .await
        .unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(secret), "password leaked: {text}");
    }
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // A server that rejects the password.
    let server = RedisServer::start();
    let url = server
        .url()
        .replace("redis://", &format!("redis://admin:{secret}@"));
    let err = RedisLockProvider::connect(&url).await.unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(secret), "password leaked: {text}");
    }

    // A malformed URL.
    let err = RedisLockProvider::connect(&format!("redis://admin:{secret}@/x"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(secret), "password leaked: {err}");

    // Debug output of a working provider.
    let provider = connect(&server).await;
    assert!(!format!("{provider:?}").contains("password"));
}

#[tokio::test]
async fn acl_user_and_password_in_the_url_work() {
    let server = RedisServer::start();
    assert!(
        server
            .command("ACL SETUSER scheduler on >job-pass ~* &* +@all")
            .starts_with("+OK")
    );
    let url = server
        .url()
        .replace("redis://", "redis://scheduler:job-pass@");
    let provider = RedisLockProvider::connect(&url).await.unwrap();
    let guard = provider
        .try_lock(&config("acl", Duration::from_secs(5), Duration::ZERO))
        .await
        .unwrap();
    assert!(guard.is_some());
    assert!(!format!("{provider:?}").contains("job-pass"));
}

#[tokio::test]
async fn calls_fail_with_an_error_while_redis_is_down_and_recover_after() {
    let mut server = RedisServer::start();
    let provider = connect(&server).await;
    let config = config("outage", Duration::from_secs(5), Duration::ZERO);
    server.kill();
    let started = Instant::now();
    let err = provider.try_lock(&config).await.unwrap_err();
    assert!(err.is_store_failure(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a call hung for {:?}",
        started.elapsed()
    );
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match provider.try_lock(&config).await {
            Ok(Some(guard)) => {
                guard.unlock().await.unwrap();
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "provider did not recover: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn fencing_tokens_keep_increasing_across_a_server_restart() {
    let mut server = RedisServer::start();
    let provider = connect(&server).await;
    let config = config("fence-restart", Duration::from_secs(5), Duration::ZERO);
    let before = provider.try_lock(&config).await.unwrap().unwrap();
    let token_before = before.fencing_token().await.unwrap();
    before.unlock().await.unwrap();
    server.restart(); // keeps nothing on disk: the counter is gone
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        if let Ok(Some(guard)) = provider.try_lock(&config).await {
            break guard;
        }
        assert!(
            Instant::now() < deadline,
            "provider did not recover after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        after.fencing_token().await.unwrap() > token_before,
        "token {} after restart is not above {token_before}",
        after.fencing_token().await.unwrap()
    );
}

/// Reads a fencing counter and its TTL straight from the server.
struct Counter<'a> {
    server: &'a RedisServer,
    key: String,
}

/// A provider, a 30 s configuration of `name`, and that lock's fencing counter.
async fn counted<'a>(
    server: &'a RedisServer,
    name: &str,
) -> (RedisLockProvider, LockConfiguration, Counter<'a>) {
    let provider = connect(server).await;
    let counter = Counter {
        server,
        key: provider.fence_key(name),
    };
    let config = config(name, Duration::from_secs(30), Duration::ZERO);
    (provider, config, counter)
}

impl Counter<'_> {
    fn value(&self) -> i64 {
        let reply = self.server.command(&format!("GET {}", self.key));
        reply.lines().nth(1).unwrap_or_default().parse().unwrap()
    }

    fn ttl_ms(&self) -> i64 {
        self.server.pttl(&self.key)
    }
}

const WEEK_MS: i64 = 604_800_000;

/// This machine's clock (the server's too) in microseconds since the epoch.
fn clock_us() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

#[tokio::test]
async fn every_token_is_the_counter_lifted_to_the_clock_and_the_counter_lives_a_week() {
    let server = RedisServer::start();
    let (provider, config, counter) = counted(&server, "fence-ttl").await;
    let a_week = |left: i64| left > WEEK_MS - 60_000 && left <= WEEK_MS;

    // A new counter is seeded with the server's clock in microseconds.
    let before_us = clock_us();
    let first = provider.try_lock(&config).await.unwrap().unwrap();
    let seeded = first.fencing_token().await.unwrap();
    assert_eq!(counter.value(), seeded as i64);
    assert!(
        (seeded as i64 - before_us).abs() < 60_000_000,
        "seed {seeded} is not the clock ({before_us} us)"
    );
    assert!(
        a_week(counter.ttl_ms()),
        "counter TTL {} ms",
        counter.ttl_ms()
    );
    first.unlock().await.unwrap();

    // Later tokens are above the last one and never below the clock: a
    // counter that a crash reloaded older is lifted to it.
    let second = provider.try_lock(&config).await.unwrap().unwrap();
    let now_us = clock_us();
    let next = second.fencing_token().await.unwrap();
    assert!(next > seeded, "token {next} is not above {seeded}");
    assert!(
        (next as i64 - now_us).abs() < 60_000_000,
        "token {next} is not the clock ({now_us} us)"
    );
    assert_eq!(counter.value(), next as i64);
    assert!(
        a_week(counter.ttl_ms()),
        "the counter must keep a week's expiry"
    );
    second.unlock().await.unwrap();

    // A counter ahead of the clock (and without expiry) is incremented.
    let ahead = 9_000_000_000_000_000i64;
    server.command(&format!("SET {} {ahead}", counter.key));
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    assert_eq!(
        guard.fencing_token().await.unwrap(),
        ahead.unsigned_abs() + 1
    );
    guard.unlock().await.unwrap();

    // An expired counter is seeded again, from the clock: tokens still rise
    // above every token it gave while it was below the clock.
    server.command(&format!("SET {} {}", counter.key, seeded + 10));
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    let last = guard.fencing_token().await.unwrap();
    guard.unlock().await.unwrap();
    server.command(&format!("DEL {}", counter.key));
    let reseeded = provider.try_lock(&config).await.unwrap().unwrap();
    assert!(
        reseeded.fencing_token().await.unwrap() > last,
        "token {} after expiry is not above {last}",
        reseeded.fencing_token().await.unwrap()
    );
    assert!(
        a_week(counter.ttl_ms()),
        "counter TTL {} ms",
        counter.ttl_ms()
    );
    reseeded.unlock().await.unwrap();
}

#[tokio::test]
async fn a_pause_parks_the_fencing_counter_and_resume_restores_it() {
    use shedlock_core::LockAdmin;
    let server = RedisServer::start();
    let (provider, config, counter) = counted(&server, "fence-pause").await;
    let before = provider.try_lock(&config).await.unwrap().unwrap();
    let token_before = before.fencing_token().await.unwrap();
    before.unlock().await.unwrap();
    // Ahead of the clock, so a restore from the clock alone would go back.
    let ahead = 8_000_000_000_000_000i64;
    server.command(&format!("SET {} {ahead}", counter.key));

    provider.pause("fence-pause").await.unwrap();
    assert!(counter.value() < 0, "a paused lock's counter is parked");
    for _ in 0..3 {
        assert!(provider.try_lock(&config).await.unwrap().is_none());
    }
    assert!(
        !server.exists(&provider.lock_key("fence-pause")),
        "a refused acquisition of a paused lock leaves the lock key free"
    );
    provider.resume("fence-pause").await.unwrap();
    assert!(counter.value() >= ahead, "resume restores the counter");
    let after = provider.try_lock(&config).await.unwrap().unwrap();
    let token_after = after.fencing_token().await.unwrap();
    assert!(token_after > ahead.unsigned_abs() && token_after > token_before);
    after.unlock().await.unwrap();

    // A pause stored by hand (or by an earlier version) leaves the counter
    // unparked, so plain acquisitions would not see it; pausing again parks it.
    server.command("HSET {job-lock:default:fence-pause}:settings capacity 0");
    provider.pause("fence-pause").await.unwrap();
    assert!(
        counter.value() < 0,
        "pausing a paused lock parks its counter"
    );
    assert!(provider.try_lock(&config).await.unwrap().is_none());
    provider.resume("fence-pause").await.unwrap();

    // The same through capacity 0 and back.
    provider.set_capacity("fence-pause", 0).await.unwrap();
    assert!(provider.try_lock(&config).await.unwrap().is_none());
    provider.set_capacity("fence-pause", 1).await.unwrap();
    let resumed = provider.try_lock(&config).await.unwrap().unwrap();
    assert!(resumed.fencing_token().await.unwrap() > token_after);
    resumed.unlock().await.unwrap();
}

#[tokio::test]
async fn tokens_rise_across_one_round_trip_and_scripted_acquisitions() {
    // Plain acquisitions get their token on request; waiting and shared ones
    // run the acquisition script, which hands it out with the lease: mixed,
    // tokens still rise at every step.
    let server = RedisServer::start();
    let plain = connect(&server).await;
    let executor = shedlock_core::LockingTaskExecutor::new(plain.clone());
    let config = config("fence-mixed", Duration::from_secs(30), Duration::ZERO);
    let mut last = 0;
    for round in 0..20 {
        let guard = match round % 3 {
            0 => plain.try_lock(&config).await.unwrap().unwrap(),
            1 => plain
                .try_lock_waiting(&config, &shedlock_core::Waiter::new(Duration::from_secs(1)))
                .await
                .unwrap()
                .unwrap(),
            _ => executor
                .lock_waiting(&config, Duration::from_secs(1))
                .await
                .unwrap()
                .unwrap(),
        };
        assert!(
            guard.fencing_token().await.unwrap() > last,
            "round {round}: token {} after {last}",
            guard.fencing_token().await.unwrap()
        );
        last = guard.fencing_token().await.unwrap();
        guard.unlock().await.unwrap();
    }
}

#[tokio::test]
async fn an_acquisition_resent_after_a_lost_reply_still_owns_the_lock() {
    // A cluster client resends a request whose connection dropped: the
    // script then finds its own value and must report the lock as taken,
    // with the same token, and a shared acquisition must not take its
    // permits twice.
    let server = RedisServer::start();
    let connection = Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acquire = redis::Script::new(concat!(
        include_str!("../src/scripts/fence.lua"),
        include_str!("../src/scripts/lease_value.lua"),
        include_str!("../src/scripts/acquire.lua"),
        include_str!("../src/scripts/acquire_main.lua")
    ));
    // The script's answer: a token when it took the lock, negative when not.
    let run = async |name: &str, value: &str, permits: u32, capacity: i64| -> i64 {
        let lock = format!("job-lock:default:{name}");
        let mut invocation = acquire.key(&lock);
        invocation
            .key(format!("{{{lock}}}:fence"))
            .key(format!("{{{lock}}}:holders"))
            .key(format!("{{{lock}}}:waiters"))
            .key(format!("{{{lock}}}:settings"))
            .arg(value)
            .arg(30_000)
            .arg(permits)
            .arg(capacity)
            .arg("")
            .arg(0);
        invocation
            .invoke_async(&mut connection.clone())
            .await
            .unwrap()
    };
    // Exclusive.
    let first = run("resent", "value-1", 0, -1).await;
    let resent = run("resent", "value-1", 0, -1).await;
    let other = run("resent", "value-2", 0, -1).await;
    assert!(first > 0);
    assert_eq!(
        resent, first,
        "the resent acquisition must get its own token back"
    );
    assert!(other < 0, "another acquisition must still be refused");

    // Counted: 2 of 3 permits, resent, leaves 1 permit for someone else.
    let first = run("resent-counted", "value-1", 2, 3).await;
    let resent = run("resent-counted", "value-1", 2, 3).await;
    assert!(first > 0);
    assert_eq!(
        resent, first,
        "the resent shared acquisition must get its own token back"
    );
    let one = run("resent-counted", "value-2", 1, 3).await;
    assert!(one > first, "the permit left must still be free");
    let none = run("resent-counted", "value-3", 1, 3).await;
    assert!(none < 0, "the resend took its permits twice");
}

#[tokio::test]
async fn shared_holders_mark_the_lock_key_so_shedlock_for_java_finds_it_held() {
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let shared = config("marked", Duration::from_secs(30), Duration::ZERO)
        .with_permits(1)
        .unwrap();
    let mut first = provider.try_lock(&shared).await.unwrap().expect("free");
    let second = provider.try_lock(&shared).await.unwrap().expect("shared");
    // ShedLock for Java takes a lock with SET NX PX on the same key.
    let java = server
        .command("SET job-lock:default:marked ADDED:2026-01-01T00:00:00.000Z@java NX PX 30000");
    assert!(
        java.starts_with("$-1"),
        "Java took a lock held by shared holders: {java}"
    );
    // The marker follows the latest shared lease, and goes with the last holder.
    assert!(
        first
            .extend(Duration::from_secs(90), Duration::ZERO)
            .await
            .unwrap()
    );
    let ttl: i64 = server.pttl("job-lock:default:marked");
    assert!(
        ttl > 60_000,
        "the marker did not follow the extension: {ttl} ms"
    );
    first.unlock().await.unwrap();
    assert!(server.exists("job-lock:default:marked"));
    second.unlock().await.unwrap();
    assert!(!server.exists("job-lock:default:marked"));
    let state = shedlock_core::LockAdmin::lock_state(&provider, "marked")
        .await
        .unwrap();
    assert!(state.holders.is_empty(), "{state:?}");
}

#[tokio::test]
async fn an_acquisition_cancelled_while_unanswered_is_released() {
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let observer = connect(&server).await;
    let warm_up = config("warm-up", Duration::from_secs(1), Duration::ZERO);
    let config = config("cancelled", Duration::from_secs(60), Duration::ZERO);
    provider.try_lock(&warm_up).await.unwrap();
    // The server holds the write; the caller gives up before the reply.
    assert!(server.command("CLIENT PAUSE 400 WRITE").starts_with("+OK"));
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), provider.try_lock(&config)).await;
    assert!(
        cancelled.is_err(),
        "the acquisition should still have been unanswered"
    );
    assert_freed_within_5s(
        &observer,
        &config,
        "the cancelled acquisition's lease was left held",
    )
    .await;
}

#[tokio::test]
async fn only_a_release_somebody_waited_for_is_published() {
    use futures_util::StreamExt;
    let server = RedisServer::start();
    let holder = connect(&server).await;
    let waiter = connect(&server).await;
    let client = Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("shedlock:released").await.unwrap();
    let mut messages = pubsub.into_on_message();
    let config = config("published", Duration::from_secs(30), Duration::ZERO);

    // Nobody waits: no PUBLISH (a plain lock cycle is SET + INCR + release).
    let guard = holder.try_lock(&config).await.unwrap().unwrap();
    guard.unlock().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
    assert!(quiet.is_err(), "a release nobody waited for was published");

    // A waiter's failed attempt marks the holder's value; the holder's own
    // scripts still know it, and its release is published.
    let mut guard = holder.try_lock(&config).await.unwrap().unwrap();
    let waiting = shedlock_core::Waiter::new(Duration::from_secs(2));
    assert!(
        waiter
            .try_lock_waiting(&config, &waiting)
            .await
            .unwrap()
            .is_none()
    );
    let value = server.command("GET job-lock:default:published");
    assert!(value.contains(";waited"), "holder not marked: {value}");
    assert!(
        guard
            .extend(Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
    );
    guard.unlock().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("the release a waiter waited for was not published")
        .expect("subscription ended");
    assert_eq!(
        message.get_payload::<String>().unwrap(),
        "job-lock:default:published"
    );

    // A lock taken after waiting is marked from the start: shared callers
    // held back by the waiter's place in the queue may be waiting too.
    let executor = shedlock_core::LockingTaskExecutor::new(waiter.clone());
    let after_waiting = executor
        .lock_waiting(&config, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let value = server.command("GET job-lock:default:published");
    assert!(value.contains(";waited"), "not marked: {value}");
    after_waiting.unlock().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
    assert!(
        message.is_ok(),
        "a lock taken after waiting was released unpublished"
    );
    assert!(!server.exists("job-lock:default:published"));
}
