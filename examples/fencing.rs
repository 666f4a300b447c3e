//! Fencing tokens end to end: a store downstream refuses writes that carry an
//! older token than one it has already seen, so a job that lost its lease (a
//! long GC pause, a frozen VM) cannot overwrite the work of the next holder.
//!
//! `cargo run --example fencing` (in memory; the Redis provider hands out
//! tokens the same way, and they keep increasing across Redis restarts).

use std::sync::Mutex;
use std::time::Duration;

use shedlock::{InMemoryLockProvider, LockConfiguration, LockGuard, LockProvider};
use tracing_subscriber::EnvFilter;

/// A store that remembers the highest token it accepted.
#[derive(Default)]
struct FencedStore {
    highest_token: Mutex<u64>,
    value: Mutex<String>,
}

impl FencedStore {
    fn write(&self, token: u64, value: &str) -> Result<(), String> {
        let mut highest = self.highest_token.lock().map_err(|_| "poisoned")?;
        if token < *highest {
            return Err(format!("rejected: token {token} is older than {highest}"));
        }
        *highest = token;
        *self.value.lock().map_err(|_| "poisoned")? = value.to_owned();
        Ok(())
    }
}

/// Replica `replica` takes the lock of `config` and asks for its token while
/// the lease is held (a provider that issues it on request refuses once the
/// lease has ended).
async fn take(
    provider: &impl LockProvider,
    config: &LockConfiguration,
    replica: &str,
) -> anyhow::Result<(LockGuard, u64)> {
    let guard = provider
        .try_lock(config)
        .await?
        .ok_or_else(|| anyhow::anyhow!("lock held"))?;
    let token = guard.fencing_token().await?;
    println!(
        "replica {replica} holds '{}' with token {token}",
        config.name()
    );
    Ok((guard, token))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let provider = InMemoryLockProvider::new();
    let store = FencedStore::default();
    let config = LockConfiguration::new("export", Duration::from_millis(200), Duration::ZERO)?;

    // Replica A takes the lock, then stalls past its 200 ms lease.
    let (stale, stale_token) = take(&provider, &config, "A").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Replica B takes the lock after A's lease ended and writes first.
    let (fresh, fresh_token) = take(&provider, &config, "B").await?;
    store
        .write(fresh_token, "written by B")
        .map_err(anyhow::Error::msg)?;
    println!("B's write accepted");

    // A wakes up and tries to write with its old token: the store refuses.
    match store.write(stale_token, "written by A") {
        Ok(()) => anyhow::bail!("the stale write must be refused"),
        Err(refusal) => println!("A's write {refusal}"),
    }
    println!(
        "store holds: {:?}",
        store
            .value
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
    );
    fresh.unlock().await?;
    stale.unlock().await?; // its lease ended: this touches nothing
    Ok(())
}
