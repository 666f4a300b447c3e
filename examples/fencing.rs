//! Fencing tokens end to end: a store downstream refuses writes that carry an
//! older token than one it has already seen, so a job that lost its lease (a
//! long GC pause, a frozen VM) cannot overwrite the work of the next holder.
//!
//! `cargo run --example fencing` (in memory; the Redis provider hands out
//! tokens the same way, and they keep increasing across Redis restarts).

use std::sync::Mutex;
use std::time::Duration;

use shedlock::{InMemoryLockProvider, LockConfiguration, LockProvider};
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let provider = InMemoryLockProvider::new();
    let store = FencedStore::default();
    let config = LockConfiguration::new("export", Duration::from_millis(200), Duration::ZERO)?;

    // Replica A takes the lock, then stalls past its 200 ms lease.
    let stale = provider
        .try_lock(&config)
        .await?
        .ok_or_else(|| anyhow::anyhow!("lock held"))?;
    // Ask for the token while the lease is held (a provider that issues it
    // on request refuses once the lease has ended).
    let stale_token = stale.fencing_token().await?;
    println!("replica A holds 'export' with token {stale_token}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Replica B takes the lock after A's lease ended and writes first.
    let fresh = provider
        .try_lock(&config)
        .await?
        .ok_or_else(|| anyhow::anyhow!("lock held"))?;
    let fresh_token = fresh.fencing_token().await?;
    println!("replica B holds 'export' with token {fresh_token}");
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
