//! Hostile input: lock names that look like Redis syntax, Lua, glob patterns
//! or nothing at all, and credentials that must never leak.
//!
//! Every name either works as a lock of its own, stored under exactly
//! `job-lock:default:<name>`, or is refused with
//! `LockError::InvalidConfiguration`; nothing in a name is run as a script or
//! matched as a pattern. A password in the Redis URL never shows in an
//! error, in `Debug` output, or in a `tracing` event, captured here by a
//! minimal subscriber of this file.

#[path = "support/workers.rs"]
mod workers;

use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shedlock_core::{
    LockConfiguration, LockError, LockProvider, LockingTaskExecutor, MAX_NAME_LEN, Waiter,
};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::causes;
use shedlock_test_support::redis::RedisServer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use workers::{connection, owned_server};

/// Names that must each work as a lock of their own.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "ünïcødé ✓ 日本語 🔒",
        "a:b:c",
        "job-lock:default:victim",
        "{x}",
        "}{",
        "{",
        "}",
        "{}",
        "line\nbreak",
        "cr\r\nlf\ttab",
        "nul\0byte",
        "\"double\" 'single' `back`",
        "\"') redis.call('FLUSHALL') --",
        "]] redis.call('FLUSHALL') --[[",
        "'); return redis.call('DEL', KEYS[1]) --",
        "*",
        "?",
        "[a-z]*",
        "job-lock:*",
        "%s %d {} {0} {name}",
        "\\",
        "  padded  ",
        "..",
        "$(rm -rf /)",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("a".repeat(MAX_NAME_LEN));
    names.push("é".repeat(MAX_NAME_LEN / 2)); // two bytes each: exactly the limit
    names
}

async fn exists(connection: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(connection)
        .await
        .unwrap()
        == 1
}

async fn get(connection: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

fn config(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, Duration::from_secs(60), Duration::ZERO)
        .unwrap_or_else(|err| panic!("name {name:?} rejected: {err}"))
}

/// A short form of a name for messages (the long ones are 1 KB).
fn shown(name: &str) -> String {
    let mut shown: String = format!("{name:?}").chars().take(40).collect();
    if shown.len() < format!("{name:?}").len() {
        shown.push_str("...");
    }
    shown
}

#[tokio::test]
async fn hostile_names_are_each_their_own_lock_and_never_run_or_match_anything() {
    let server = RedisServer::start();
    let a = RedisLockProvider::connect(server.url())
        .await
        .unwrap()
        .with_locked_by("hostile-a");
    let b = RedisLockProvider::connect(server.url())
        .await
        .unwrap()
        .with_locked_by("hostile-b");
    let mut redis = connection(server.url()).await;

    // Bystanders: a plain key and another holder's lock, which a name run as
    // Lua (FLUSHALL, DEL) or matched as a pattern (`*`) would remove.
    let sentinel = "hostile-input-sentinel";
    redis::cmd("SET")
        .arg(sentinel)
        .arg("still here")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let bystander = RedisLockProvider::connect(server.url())
        .await
        .unwrap()
        .with_locked_by("bystander");
    let bystander_guard = bystander
        .try_lock(&config("victim"))
        .await
        .unwrap()
        .expect("the bystander's lock is free");
    let bystander_value = get(&mut redis, "job-lock:default:victim").await;
    assert!(bystander_value.is_some());

    let names = hostile_names();
    for (index, name) in names.iter().enumerate() {
        let shown = shown(name);
        let key = format!("job-lock:default:{name}");
        assert_eq!(a.lock_key(name), key, "key of {shown}");

        let guard = a
            .try_lock(&config(name))
            .await
            .unwrap_or_else(|err| panic!("{shown}: {err}"))
            .unwrap_or_else(|| panic!("{shown} should be free"));
        assert!(exists(&mut redis, &key).await, "no key {shown}");
        let value = get(&mut redis, &key).await.unwrap_or_default();
        // `ADDED:<locked_at>@<locked_by>;id=<acquisition id>`, whatever the name.
        assert!(
            value.starts_with("ADDED:") && value.contains("@hostile-a;id="),
            "{shown}: unreadable value {value:?}"
        );

        let refused = b.try_lock(&config(name)).await.unwrap();
        assert!(refused.is_none(), "{shown} was taken twice");

        // Another name, held at the same time, is another lock.
        let other = &names[(index + 1) % names.len()];
        let other_guard = b
            .try_lock(&config(other))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not independent of {shown}", self::shown(other)));
        other_guard.unlock().await.unwrap();

        guard.unlock().await.unwrap();
        assert!(
            !exists(&mut redis, &key).await,
            "{shown}: key left after unlock"
        );
        let again = b
            .try_lock(&config(name))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{shown} not free after unlock"));
        again.unlock().await.unwrap();

        assert!(
            exists(&mut redis, sentinel).await,
            "the sentinel key vanished after {shown}"
        );
        assert_eq!(
            get(&mut redis, "job-lock:default:victim").await,
            bystander_value,
            "another holder's lock changed after {shown}"
        );
    }
    assert!(
        b.try_lock(&config("victim")).await.unwrap().is_none(),
        "the bystander's lock was freed"
    );
    bystander_guard.unlock().await.unwrap();
    println!(
        "hostile input: {} hostile names each worked as their own lock",
        names.len()
    );
}

#[tokio::test]
async fn release_notifications_match_names_exactly_not_as_patterns() {
    let server = RedisServer::start();
    let holder = RedisLockProvider::connect(server.url()).await.unwrap();
    let waiter = RedisLockProvider::connect(server.url()).await.unwrap();
    let mut star = waiter.watch_releases("*").await;
    // A waiter's failed attempt marks the holder, so that its release is published.
    let waiting = Waiter::new(Duration::from_secs(2));
    let wait_on = |name: &'static str| {
        let (waiter, waiting) = (&waiter, &waiting);
        async move {
            let attempt = waiter.try_lock_waiting(&config(name), waiting).await;
            assert!(attempt.unwrap().is_none(), "{name} was not held");
        }
    };

    for other in ["?", "x", "[*]"] {
        let guard = holder.try_lock(&config(other)).await.unwrap().unwrap();
        wait_on(other).await;
        guard.unlock().await.unwrap();
    }
    let woken = tokio::time::timeout(Duration::from_millis(300), star.released()).await;
    assert!(
        woken.is_err(),
        "a waiter on '*' was woken by other locks' releases"
    );

    let guard = holder.try_lock(&config("*")).await.unwrap().unwrap();
    wait_on("*").await;
    guard.unlock().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), star.released())
        .await
        .expect("the release of '*' did not wake its waiter");
}

#[test]
fn empty_blank_and_oversized_names_are_invalid_configurations() {
    let huge = "x".repeat(1024 * 1024);
    let just_over = "a".repeat(MAX_NAME_LEN + 1);
    let multibyte_over = "é".repeat(MAX_NAME_LEN / 2 + 1);
    let cases: [(&str, &str); 7] = [
        ("", "empty"),
        (" ", "empty"),
        ("\t\n\r ", "empty"),
        ("\u{3000}\u{2003}", "empty"), // ideographic and em spaces
        (&just_over, "bytes"),
        (&multibyte_over, "bytes"),
        (&huge, "bytes"),
    ];
    for (name, says) in cases {
        let err = LockConfiguration::new(name, Duration::from_secs(1), Duration::ZERO)
            .expect_err(&format!("{} was accepted", shown(name)));
        assert!(
            matches!(err, LockError::InvalidConfiguration(_)),
            "{}: {err:?}",
            shown(name)
        );
        let message = err.to_string();
        assert!(message.contains(says), "{}: {message}", shown(name));
        // A clear message: it says what is wrong, it does not echo a 1 MB name.
        assert!(message.len() < 300, "{}: {message}", shown(name));
    }
    println!(
        "hostile input: 1 MB name refused with: {}",
        LockConfiguration::new(huge.as_str(), Duration::from_secs(1), Duration::ZERO)
            .map(|_| ())
            .unwrap_err()
    );
}

/// Every `tracing` event and span of this test binary, as text.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);

/// A subscriber that writes every event and span, with all fields, to [`LOGS`].
struct Capture;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

fn log(line: String) {
    LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(format!("span {}:", span.metadata().name()));
        span.record(&mut fields);
        log(fields.0);
        Id::from_u64(NEXT_SPAN.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut fields = Fields("span record:".to_owned());
        values.record(&mut fields);
        log(fields.0);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut fields = Fields(format!("{} {}:", metadata.level(), metadata.target()));
        event.record(&mut fields);
        log(fields.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Everything `result` can show: its message, `Debug`, and its sources'.
fn texts<T: fmt::Debug>(result: &Result<T, LockError>) -> Vec<String> {
    let mut texts = vec![format!("{result:?}")];
    if let Err(err) = result {
        for cause in causes(err) {
            texts.push(cause.to_string());
            texts.push(format!("{cause:?}"));
        }
    }
    texts
}

#[tokio::test]
async fn a_password_in_the_url_never_shows_in_errors_debug_output_or_logs() {
    // Global, so events of spawned tasks on any thread are captured too.
    tracing::subscriber::set_global_default(Capture)
        .expect("no other test of this binary sets a subscriber");
    let secret = "s3cret-Pa55w0rd-7781";
    let wrong = "wr0ng-Pa55w0rd-1187";
    let mut server = owned_server();
    assert!(
        server
            .command(&format!("ACL SETUSER scheduler on >{secret} ~* &* +@all"))
            .starts_with("+OK")
    );
    let url = server.url().to_owned();
    let with_password =
        |password: &str| url.replace("redis://", &format!("redis://scheduler:{password}@"));
    let mut shown = Vec::new();

    // A wrong password, a malformed URL with a password.
    let wrong_password = RedisLockProvider::connect(&with_password(wrong)).await;
    assert!(wrong_password.is_err(), "a wrong password was accepted");
    shown.extend(texts(&wrong_password));
    let malformed =
        RedisLockProvider::connect(&format!("redis://scheduler:{secret}@:notaport")).await;
    assert!(malformed.is_err());
    shown.extend(texts(&malformed));

    // The right one, then every kind of call against a killed server.
    let provider = RedisLockProvider::connect(&with_password(secret))
        .await
        .unwrap();
    shown.push(format!("{provider:?}"));
    let executor = LockingTaskExecutor::new(provider.clone());
    shown.push(format!("{executor:?}"));
    let config =
        LockConfiguration::new("credentials", Duration::from_secs(5), Duration::ZERO).unwrap();
    let mut guard = provider.try_lock(&config).await.unwrap().unwrap();
    let dropped = provider
        .try_lock(
            &LockConfiguration::new(
                "credentials-dropped",
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    shown.push(format!("{guard:?}"));
    server.kill();

    shown.extend(texts(
        &guard.extend(Duration::from_secs(5), Duration::ZERO).await,
    ));
    shown.extend(texts(&guard.unlock().await));
    drop(dropped); // released in the background, which fails and logs
    shown.extend(texts(&provider.try_lock(&config).await));
    shown.extend(texts(&executor.execute(&config, async {}).await));
    shown.extend(texts(
        &executor
            .lock_waiting(&config, Duration::from_millis(300))
            .await,
    ));
    shown.extend(texts(
        &RedisLockProvider::connect(&with_password(secret)).await,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let logs = LOGS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let port = server.port().to_string();
    assert!(
        logs.iter()
            .any(|line| line.contains("lock=credentials") && line.contains(&port)),
        "the capture missed the failed calls' events: {logs:#?}"
    );
    let errors = shown.iter().filter(|text| text.contains("Err(")).count();
    assert!(errors >= 7, "expected the calls to fail: {shown:#?}");
    for text in shown.iter().chain(&logs) {
        for password in [secret, wrong] {
            assert!(!text.contains(password), "password leaked: {text}");
        }
    }
    println!(
        "credentials: {} error and Debug texts and {} tracing lines checked, no password in any",
        shown.len(),
        logs.len()
    );
}
