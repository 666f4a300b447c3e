//! Helpers shared by the fault tests: a server each test owns, and raw Redis
//! commands. Worker processes are `shedlock_test_support::Worker`.

#![allow(dead_code)] // each test file uses part of this module

use std::time::{Duration, Instant};

use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::{Worker, free_port};

/// A private server this test owns, even when `SHEDLOCK_TEST_REDIS_URL` names
/// a shared one: the test kills, restarts or reconfigures it.
pub fn owned_server() -> RedisServer {
    let port = free_port();
    RedisServer::start_with(
        port,
        format!("redis://127.0.0.1:{port}"),
        vec![format!("--port {port}")],
    )
}

/// A new empty file in the temporary directory (its name has `tag`, this
/// process and the time) for worker processes to append their records to;
/// its path, and the path as text for a worker's environment.
pub fn new_records_file(tag: &str) -> (std::path::PathBuf, String) {
    let file = std::env::temp_dir().join(format!(
        "shedlock-{tag}-{}-{}",
        std::process::id(),
        shedlock_test_support::now_ms()
    ));
    std::fs::write(&file, "").unwrap_or_else(|err| panic!("cannot make {}: {err}", file.display()));
    let path = file.to_string_lossy().into_owned();
    (file, path)
}

/// Waits up to `timeout` for an element of the Redis list `list` (polled:
/// a blocking pop would tie up the shared connection).
pub async fn next_event(
    connection: &mut redis::aio::MultiplexedConnection,
    list: &str,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let popped: Option<String> = redis::cmd("LPOP")
            .arg(list)
            .query_async(connection)
            .await
            .unwrap_or_else(|err| panic!("LPOP {list} failed: {err}"));
        if popped.is_some() {
            return popped;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The next event pushed to `list` within 10 s; fails the test with the
/// output of `workers` when none comes (`never` says what did not happen).
pub async fn first_event<const N: usize>(
    events: &mut redis::aio::MultiplexedConnection,
    list: &str,
    workers: [&mut Worker; N],
    never: &str,
) -> String {
    match next_event(events, list, Duration::from_secs(10)).await {
        Some(event) => event,
        None => {
            let outputs: Vec<String> = workers.into_iter().map(Worker::kill_and_output).collect();
            panic!("{never}:\n{}", outputs.join("\n"))
        }
    }
}

/// Spawns the worker `test`, `url_env` naming the server at `url` to it,
/// and waits for the first event it pushes to `list` ([`first_event`]).
/// Returns a connection to read its later events, the worker and the event.
pub async fn spawn_until_first_event(
    url: &str,
    test: &str,
    url_env: &str,
    list: &str,
    never: &str,
) -> (redis::aio::MultiplexedConnection, Worker, String) {
    let mut events = connection(url).await;
    let mut worker = Worker::spawn(test, &[(url_env, url)]);
    let event = first_event(&mut events, list, [&mut worker], never).await;
    (events, worker, event)
}

/// In a worker process, the server's URL from `url_env` and a provider on
/// it, with `locked_by`; `None` when run as a plain (ignored) test, the
/// variable unset: the worker then does nothing.
pub async fn worker_provider(
    url_env: &str,
    locked_by: Option<&str>,
) -> Result<Option<(String, shedlock_redis::RedisLockProvider)>, shedlock_core::LockError> {
    let Ok(url) = std::env::var(url_env) else {
        return Ok(None);
    };
    let provider = shedlock_redis::RedisLockProvider::connect(&url).await?;
    let provider = match locked_by {
        Some(locked_by) => provider.with_locked_by(locked_by),
        None => provider,
    };
    Ok(Some((url, provider)))
}

/// A worker's turn as the holder: takes `config` with `provider` (on the
/// server at `url`) and runs `job`, given a connection for its reports; an
/// error when the lock was held by someone else, or a report failed.
pub async fn hold_and_report(
    provider: shedlock_redis::RedisLockProvider,
    url: &str,
    config: &shedlock_core::LockConfiguration,
    job: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> redis::RedisResult<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let executor = shedlock_core::LockingTaskExecutor::new(provider);
    let mut events = connection(url).await;
    match executor.execute(config, job(&mut events)).await? {
        Some(result) => Ok(result?),
        None => Err("the lock was held by someone else".into()),
    }
}

/// Pushes `event` to the Redis list `list`: a worker's report to the test.
pub async fn push_event(
    connection: &mut redis::aio::MultiplexedConnection,
    list: &str,
    event: &str,
) -> redis::RedisResult<()> {
    redis::cmd("RPUSH")
        .arg(list)
        .arg(event)
        .query_async::<i64>(connection)
        .await
        .map(drop)
}

/// When the lease on `key` ends by the server's clock, read on ours: no
/// sooner than `earliest`, no later than `latest` (PTTL's rounding to whole
/// milliseconds included). Fails the test unless 0 < PTTL <= `lease`, saying
/// whose lease (`whose`) it was.
pub struct LeaseEnd {
    pub earliest: Instant,
    pub latest: Instant,
    /// The PTTL read.
    pub ttl: Duration,
    /// How long reading it took.
    pub read_took: Duration,
}

pub async fn lease_end(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    lease: Duration,
    whose: &str,
) -> LeaseEnd {
    let sent = Instant::now();
    let ttl = pttl(connection, key).await;
    let received = Instant::now();
    assert!(
        ttl > 0 && ttl <= lease.as_millis() as i64,
        "{whose} lease has {ttl} ms left, expected 0 < ttl <= {} ms",
        lease.as_millis()
    );
    let ttl = Duration::from_millis(ttl.unsigned_abs());
    LeaseEnd {
        earliest: sent + ttl - Duration::from_millis(1),
        latest: received + ttl + Duration::from_millis(1),
        ttl,
        read_took: received - sent,
    }
}

/// A plain connection to `url` for the test's own commands.
pub async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|err| panic!("bad Redis URL {url}: {err}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

/// The remaining time to live of `key` in milliseconds (negative: no key or no expiry).
pub async fn pttl(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap_or_else(|err| panic!("PTTL {key} failed: {err}"))
}
