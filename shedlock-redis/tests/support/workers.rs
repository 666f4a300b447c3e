//! Helpers shared by the fault tests: a server each test owns, and raw Redis
//! commands. Worker processes are `shedlock_test_support::Worker`.

#![allow(dead_code)] // each test file uses part of this module

use std::time::{Duration, Instant};

use shedlock_test_support::free_port;
use shedlock_test_support::redis::RedisServer;

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
