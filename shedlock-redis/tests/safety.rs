//! Promises that hold through the interleavings a review found: fencing
//! tokens after a crash that reloads older state, pauses stored by anyone,
//! late answers, uncertain acquisitions, and shared holders whose marker in
//! the lock key is gone.

#[path = "support/workers.rs"]
mod workers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::free_port;
use shedlock_test_support::redis::RedisServer;

use shedlock_test_support::proxy::{Direction, FaultProxy};
use workers::connection;

fn config(name: &str, lock_at_most_for: Duration) -> LockConfiguration {
    LockConfiguration::new(name, lock_at_most_for, Duration::ZERO).unwrap()
}

/// A server that keeps its data in `dir` (RDB, or AOF when `aof`), so a
/// kill and a start reload what was saved.
fn persistent_server(dir: &Path, aof: bool) -> RedisServer {
    let port = free_port();
    let mut args = vec![
        format!("--port {port}"),
        format!("--dir '{}'", dir.display()),
    ];
    if aof {
        args.push("--appendonly yes".to_owned());
        args.push("--appendfsync always".to_owned());
    }
    RedisServer::start_with(port, format!("redis://127.0.0.1:{port}"), args)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shedlock-safety-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Takes and releases the lock `rounds` times, returning every token.
async fn tokens(provider: &RedisLockProvider, name: &str, rounds: usize) -> Vec<u64> {
    let config = config(name, Duration::from_secs(30));
    let mut tokens = Vec::new();
    for _ in 0..rounds {
        let guard = provider
            .try_lock(&config)
            .await
            .unwrap()
            .expect("free lock");
        tokens.push(guard.fencing_token().await.unwrap());
        guard.unlock().await.unwrap();
    }
    tokens
}

/// Every token after the event is above every token before it.
fn rising_across(before: &[u64], after: &[u64], event: &str) {
    println!("{event}: before {before:?}, after {after:?}");
    let highest = before.iter().max().copied().unwrap_or(0);
    for token in after {
        assert!(
            *token > highest,
            "after {event}, token {token} repeats or undercuts one handed out before (highest {highest}); before {before:?}, after {after:?}"
        );
    }
}

/// Waits until a restarted server has loaded its data (it answers `LOADING`
/// until then; its port is open before).
fn wait_loaded(server: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.command("PING").starts_with("+PONG") {
        assert!(
            Instant::now() < deadline,
            "the server never finished loading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn tokens_rise_after_a_crash_that_reloads_an_older_snapshot() {
    let dir = scratch("rdb");
    let mut server = persistent_server(&dir, false);
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let mut before = tokens(&provider, "rdb", 3).await;
    assert!(server.command("SAVE").starts_with("+OK"));
    // Handed out after the snapshot: a crash forgets them.
    before.extend(tokens(&provider, "rdb", 5).await);
    server.kill();
    server.restart();
    wait_loaded(&server);
    let after = tokens(&provider, "rdb", 3).await;
    rising_across(
        &before,
        &after,
        "a crash that reloaded an older RDB snapshot",
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tokens_rise_after_a_crash_that_reloads_an_older_append_only_file() {
    let dir = scratch("aof");
    let older = scratch("aof-older");
    let mut server = persistent_server(&dir, true);
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let mut before = tokens(&provider, "aof", 3).await;
    // The file as a crash with `appendfsync everysec` may leave it: without
    // the last writes.
    copy_dir(&dir, &older);
    before.extend(tokens(&provider, "aof", 5).await);
    server.kill();
    copy_dir(&older, &dir);
    server.restart();
    wait_loaded(&server);
    assert_eq!(server.command("EXISTS job-lock:default:aof"), ":0\r\n");
    let after = tokens(&provider, "aof", 3).await;
    rising_across(
        &before,
        &after,
        "a crash that reloaded an older append-only file",
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&older);
}

#[tokio::test]
async fn tokens_rise_after_a_restart_without_persistence_and_a_deleted_counter() {
    let mut server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let before = tokens(&provider, "volatile", 4).await;
    server.restart();
    let after = tokens(&provider, "volatile", 3).await;
    rising_across(&before, &after, "a restart that kept nothing");
    let fence = provider.fence_key("volatile");
    assert!(server.command(&format!("DEL {fence}")).starts_with(":"));
    let last = tokens(&provider, "volatile", 3).await;
    rising_across(&after, &last, "the counter's deletion");
}

#[tokio::test]
async fn a_lock_paused_by_hand_in_its_settings_never_starts_a_job() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    // The lock has run before: its fencing counter is seeded.
    tokens(&provider, "by-hand", 2).await;
    let settings = provider.fence_key("by-hand").replace(":fence", ":settings");
    // As an operator (or an earlier build, or a restored snapshot) stores a
    // pause: capacity 0, the fencing counter untouched.
    assert!(
        server
            .command(&format!("HSET {settings} capacity 0"))
            .starts_with(':')
    );
    let config = config("by-hand", Duration::from_secs(30));
    for round in 0..3 {
        let taken = provider.try_lock(&config).await.unwrap();
        assert!(taken.is_none(), "round {round}: a paused lock was taken");
    }
    assert_eq!(server.command("EXISTS job-lock:default:by-hand"), ":0\r\n");
}

#[tokio::test]
async fn a_late_answer_never_hands_out_a_guard_whose_lease_ended() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    // Warm up: the scripts are loaded, the connection made.
    tokens(&provider, "late", 1).await;
    let lease = Duration::from_millis(300);
    // The server holds writes back for longer than the lease: the answer
    // comes after the lease's length has passed since it was sent.
    assert!(server.command("CLIENT PAUSE 450 WRITE").starts_with("+OK"));
    let taken = provider.try_lock(&config("late", lease)).await.unwrap();
    if let Some(guard) = taken {
        assert!(
            guard.lease_until() > Instant::now() + lease / 2,
            "a guard was handed out whose lease had ended (or was about to) by its own reckoning"
        );
        guard.unlock().await.unwrap();
    }
}

fn upstream(server: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// A provider through `proxy` with a 100 ms response timeout, on database
/// `db` (a database other than 0 costs each new connection a `SELECT`
/// round trip before its first command).
async fn impatient(proxy: &FaultProxy, db: u8) -> RedisLockProvider {
    let client = redis::Client::open(format!("{}/{db}", proxy.url())).unwrap();
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(100)))
        .set_connection_timeout(Some(Duration::from_millis(2_000)));
    RedisLockProvider::new_with_config(client, config)
        .await
        .unwrap()
}

/// A server, a fault proxy in front of it, and an [`impatient`] provider
/// through the proxy (on database `db`) whose scripts a lock cycle of
/// `name` loaded.
async fn impatient_behind_a_proxy(
    db: u8,
    name: &str,
) -> (RedisServer, FaultProxy, RedisLockProvider) {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(upstream(&server)).await;
    let provider = impatient(&proxy, db).await;
    tokens(&provider, name, 1).await;
    (server, proxy, provider)
}

#[tokio::test]
async fn an_uncertain_acquisition_is_called_released_only_when_its_lease_was_removed() {
    let (server, proxy, provider) = impatient_behind_a_proxy(0, "uncertain").await;
    let key = "job-lock:default:uncertain";
    // The acquisition reaches the server 400 ms late; the clean-up after its
    // timeout travels without delay and arrives first.
    proxy.set_latency(Direction::ToServer, Duration::from_millis(400));
    let uncertain = config("uncertain", Duration::from_secs(60));
    let acquisition = provider.try_lock(&uncertain);
    let undelay = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        proxy.set_latency(Direction::ToServer, Duration::ZERO);
    };
    let (taken, ()) = tokio::join!(acquisition, undelay);
    match taken {
        Err(LockError::AcquisitionUncertain { released, .. }) => {
            assert!(
                !released,
                "reported released although the clean-up found nothing (the acquisition had not landed)"
            );
        }
        other => panic!("expected an uncertain acquisition, got {other:?}"),
    }
    // The acquisition lands later; the clean-up keeps trying and removes it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !server.exists(key),
        "the late acquisition's lease was left to its end"
    );
}

#[tokio::test]
async fn an_acquisition_dropped_while_it_cleans_up_still_releases_its_lease() {
    let (server, proxy, provider) = impatient_behind_a_proxy(1, "dropped").await;
    let key = "job-lock:default:dropped";
    // Everything reaches the server 400 ms late: the acquisition times out
    // after 100 ms; its clean-up needs a new connection, whose `SELECT` is
    // still on its way when the caller gives up at 150 ms.
    proxy.set_latency(Direction::ToServer, Duration::from_millis(400));
    let gave_up = tokio::time::timeout(
        Duration::from_millis(150),
        provider.try_lock(&config("dropped", Duration::from_secs(60))),
    )
    .await;
    assert!(gave_up.is_err(), "the acquisition answered: {gave_up:?}");
    proxy.set_latency(Direction::ToServer, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let mut db1 = connection(&format!("{}/1", server.url())).await;
    let left: bool = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut db1)
        .await
        .unwrap();
    assert!(!left, "the dropped acquisition's lease was left to its end");
}

#[tokio::test]
async fn an_exclusive_holder_never_joins_live_shared_holders_whose_marker_is_gone() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let shared = config("marker-gone", Duration::from_secs(30)).shared();
    let reader = provider
        .try_lock(&shared)
        .await
        .unwrap()
        .expect("free lock");
    // ShedLock for Java's unlock (an unconditional DEL), or an eviction.
    assert_eq!(server.command("DEL job-lock:default:marker-gone"), ":1\r\n");
    let exclusive = provider
        .try_lock(&config("marker-gone", Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(
        exclusive.is_none(),
        "an exclusive holder got in beside a live shared holder"
    );
    // The key is gone or the shared marker again, never the refused value.
    let key = server.command("GET job-lock:default:marker-gone");
    assert!(
        key == "$-1\r\n" || key.contains("shedlock:shared"),
        "the refused exclusive acquisition left its value: {key:?}"
    );
    reader.unlock().await.unwrap();
}

#[tokio::test]
async fn a_shared_holder_never_extends_over_an_exclusive_holder_that_got_in() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let shared = config("foreign-exclusive", Duration::from_secs(30)).shared();
    let mut reader = provider
        .try_lock(&shared)
        .await
        .unwrap()
        .expect("free lock");
    // ShedLock for Java deletes the marker and another Java service takes the
    // key with its own SET NX: an exclusive holder the shared holder must
    // respect.
    assert_eq!(
        server.command("DEL job-lock:default:foreign-exclusive"),
        ":1\r\n"
    );
    assert!(
        server
            .command("SET job-lock:default:foreign-exclusive ADDED:2026-01-01T00:00:00.000Z@java NX PX 30000")
            .starts_with("+OK")
    );
    let extended = reader
        .extend(Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        !extended,
        "a shared holder extended beside an exclusive holder"
    );
    assert!(
        server
            .command("GET job-lock:default:foreign-exclusive")
            .contains("@java"),
        "the exclusive holder's key was touched"
    );
    // A resent shared acquisition is refused too.
    let again = provider.try_lock(&shared).await.unwrap();
    assert!(
        again.is_none(),
        "a shared acquisition got in beside an exclusive holder"
    );
}

/// A holder that asks for its token while its lock is paused: the token
/// rises as ever, and the counter stays parked (below zero, with no expiry),
/// so builds that detect a pause by `INCR`-ing the counter still see it for
/// as long as the pause lasts; after resume, tokens keep rising.
#[tokio::test]
async fn a_token_issued_during_a_pause_keeps_the_counter_parked() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let before = tokens(&provider, "parked", 2).await;
    let config = config("parked", Duration::from_secs(30));
    let guard = provider.try_lock(&config).await.unwrap().unwrap();
    shedlock_core::LockAdmin::pause(&provider, "parked")
        .await
        .unwrap();
    let fence = provider.fence_key("parked");
    let token = guard.fencing_token().await.unwrap();
    rising_across(&before, &[token], "a token issued while paused");
    let parked = server.command(&format!("GET {fence}"));
    assert!(
        parked.contains("\r\n-"),
        "the counter is no longer parked after the token: {parked:?}"
    );
    assert_eq!(
        server.command(&format!("PTTL {fence}")),
        ":-1\r\n",
        "the parked counter expires while the pause lasts"
    );
    guard.unlock().await.unwrap();
    shedlock_core::LockAdmin::resume(&provider, "parked")
        .await
        .unwrap();
    let after = tokens(&provider, "parked", 2).await;
    rising_across(&[token], &after, "the resume");
}
