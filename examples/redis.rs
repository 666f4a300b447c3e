//! A locked job against Redis, with the process-wide default provider.
//!
//! ```text
//! docker run --rm -p 6379:6379 redis:7     # or any redis-server
//! cargo run --example redis
//! REDIS_URL=redis://:password@redis.internal:6379/0 cargo run --example redis
//! ```
//!
//! Run it in two terminals at once: each call runs in only one of them.

use std::time::Duration;

use shedlock::redis::RedisLockProvider;
use shedlock::{SchedulerLock, scheduler_lock};
use tracing_subscriber::EnvFilter;

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const CALLS: u32 = 5;
const CALL_PERIOD: Duration = Duration::from_millis(700);

/// No `provider = ..`: the attribute uses the provider installed in `main`,
/// and its `lock_at_most_for` since this one sets none. `lock_at_least_for`
/// keeps the lock for 2 s after a run, so the calls in between skip.
#[scheduler_lock(name = "redis-example-report", lock_at_least_for = "2s")]
async fn report(call: u32) {
    let token = match shedlock::current_lock() {
        Some(lock) => lock.fencing_token().await.unwrap_or_default(),
        None => 0,
    };
    println!("  call {call}: ran (fencing token {token})");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());

    // Once at startup, like ShedLock's @EnableSchedulerLock.
    let provider = match RedisLockProvider::connect(&url).await {
        Ok(provider) => provider,
        Err(err) => {
            // The error names the server but never the URL's credentials.
            eprintln!(
                "Cannot use Redis: {err}\n\nStart one (`docker run --rm -p 6379:6379 redis:7` \
                 or `redis-server`), or point REDIS_URL at yours (default {DEFAULT_URL})."
            );
            std::process::exit(1);
        }
    };
    println!(
        "Connected. The lock is the key '{}', held by '{}'.",
        provider.lock_key("redis-example-report"),
        provider.locked_by()
    );
    SchedulerLock::builder(provider)
        .default_lock_at_most_for(Duration::from_secs(60))
        .install()?;

    let mut calls = tokio::time::interval(CALL_PERIOD);
    for call in 1..=CALLS {
        calls.tick().await;
        // Ok(None): the lock is held (by an earlier call's lock_at_least_for,
        // or by another process running this example).
        if report(call).await?.is_none() {
            println!("  call {call}: skipped, the lock is held");
        }
    }
    Ok(())
}
