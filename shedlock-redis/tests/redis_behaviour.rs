//! Behaviour specific to the Redis provider, against a private redis-server.

use std::time::{Duration, Instant};

use redis::Client;
use redis::aio::ConnectionManagerConfig;
use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_redis::testkit::RedisServer;
use shedlock_redis::{LockValue, RedisLockProvider};

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
    let parsed = LockValue::parse(value).unwrap_or_else(|| panic!("unreadable value {value:?}"));
    assert_eq!(parsed.locked_by, "replica-7");
    let ttl: i64 = server
        .command("PTTL job-lock:default:format")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 29_000 && ttl <= 30_000,
        "lease TTL {ttl} ms, expected about 30 s"
    );
    guard.unlock().await.unwrap();
    assert!(
        server
            .command("EXISTS job-lock:default:format")
            .starts_with(":0")
    );
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
    assert!(
        server
            .command("EXISTS locks:staging:shared-name")
            .starts_with(":1")
    );
    a.unlock().await.unwrap();
    b.unwrap().unlock().await.unwrap();
}

#[tokio::test]
async fn an_acquisition_whose_reply_is_lost_is_released_and_reported() {
    let server = RedisServer::start();
    let client = Client::open(server.url()).unwrap();
    let impatient = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_millis(100)))
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let provider = RedisLockProvider::with_connection_config(client, impatient)
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
    let port = shedlock_redis::testkit::free_port();
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
    let token_before = before.fencing_token();
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
        after.fencing_token() > token_before,
        "token {} after restart is not above {token_before}",
        after.fencing_token()
    );
}

#[tokio::test]
async fn the_fencing_counter_expires_a_week_after_its_last_use_whichever_is_ahead() {
    const WEEK_MS: i64 = 604_800_000;
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let config = config("fence-ttl", Duration::from_secs(30), Duration::ZERO);
    let fence = provider.fence_key("fence-ttl");
    let counter = || {
        let reply = server.command(&format!("GET {fence}"));
        reply
            .lines()
            .nth(1)
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap()
    };
    let ttl = || -> i64 {
        server
            .command(&format!("PTTL {fence}"))
            .trim_start_matches(':')
            .trim()
            .parse()
            .unwrap()
    };

    // Usually the clock is ahead of the counter: the token is the clock's.
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    assert_eq!(counter(), guard.fencing_token());
    let left = ttl();
    assert!(
        left > WEEK_MS - 60_000 && left <= WEEK_MS,
        "counter TTL {left} ms"
    );
    guard.unlock().await.unwrap();

    // A counter ahead of the clock (and without expiry) is incremented and renewed.
    let ahead = 9_000_000_000_000_000u64;
    server.command(&format!("SET {fence} {ahead}"));
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    assert_eq!(guard.fencing_token(), ahead + 1);
    assert_eq!(counter(), ahead + 1);
    let left = ttl();
    assert!(
        left > WEEK_MS - 60_000 && left <= WEEK_MS,
        "counter TTL {left} ms"
    );
    guard.unlock().await.unwrap();
}

#[tokio::test]
async fn an_acquisition_resent_after_a_lost_reply_still_owns_the_lock() {
    // A cluster client resends a request whose connection dropped: the
    // script then finds its own value and must report the lock as taken,
    // with the same token, and a shared acquisition must not take its
    // permits twice.
    let server = RedisServer::start();
    let mut connection = Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acquire = redis::Script::new(include_str!("../src/scripts/acquire.lua"));
    let run = |name: &str, value: &'static str, permits: u32, capacity: i64| {
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
    };
    // Exclusive.
    let first: i64 = run("resent", "value-1", 0, -1)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    let resent: i64 = run("resent", "value-1", 0, -1)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    let other: i64 = run("resent", "value-2", 0, -1)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert!(first > 0);
    assert_eq!(
        resent, first,
        "the resent acquisition must get its own token back"
    );
    assert!(other < 0, "another acquisition must still be refused");

    // Counted: 2 of 3 permits, resent, leaves 1 permit for someone else.
    let first: i64 = run("resent-counted", "value-1", 2, 3)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    let resent: i64 = run("resent-counted", "value-1", 2, 3)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert!(first > 0);
    assert_eq!(
        resent, first,
        "the resent shared acquisition must get its own token back"
    );
    let one: i64 = run("resent-counted", "value-2", 1, 3)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert!(one > first, "the permit left must still be free");
    let none: i64 = run("resent-counted", "value-3", 1, 3)
        .invoke_async(&mut connection)
        .await
        .unwrap();
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
    let ttl: i64 = server
        .command("PTTL job-lock:default:marked")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 60_000,
        "the marker did not follow the extension: {ttl} ms"
    );
    first.unlock().await.unwrap();
    assert!(
        server
            .command("EXISTS job-lock:default:marked")
            .starts_with(":1")
    );
    second.unlock().await.unwrap();
    assert!(
        server
            .command("EXISTS job-lock:default:marked")
            .starts_with(":0")
    );
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
