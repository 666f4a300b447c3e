//! Job scopes: each tenant's jobs stick to one replica (the scope's owner),
//! which runs them at every tick without asking the store; the other
//! replicas skip them without a round trip, and the tenants spread over the
//! replicas. Three simulated replicas, no server.
//!
//! ```text
//! cargo run --example scopes
//! ```
//!
//! In a service, each replica is a process with its own provider (Redis, a
//! database); here the replicas are in-memory providers sharing one store,
//! each with its own `locked_by`. A replica that dies loses its scopes when
//! their leases end; `SchedulerLock::shutdown()` gives them back at once.

use std::collections::BTreeMap;
use std::time::Duration;

use shedlock::{InMemoryLockProvider, SchedulerLock, scheduler_lock};
use tracing_subscriber::EnvFilter;

const TENANTS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];

/// A tenant's report: runs on the replica that owns the tenant's scope.
#[scheduler_lock(name = "report-{tenant}", scope = "tenant-{tenant}", provider = replica)]
async fn report(replica: &InMemoryLockProvider, who: &str, tenant: &str) {
    tracing::debug!(who, tenant, "writing the report");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // Scope leases of 3 s; a replica claims one more unclaimed scope every 200 ms.
    SchedulerLock::builder(InMemoryLockProvider::new())
        .default_lock_at_most_for(Duration::from_secs(60))
        .scope_lease_duration(Duration::from_secs(3))
        .scope_sweep_interval(Duration::from_millis(200))
        .install()?;

    let store = InMemoryLockProvider::new();
    let replicas: Vec<(String, InMemoryLockProvider)> = (0..3)
        .map(|n| {
            let who = format!("replica-{n}");
            (who.clone(), store.clone().with_locked_by(who))
        })
        .collect();
    // Which replica ran each tenant's report, tick by tick.
    let mut ran_by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for _tick in 0..12 {
        for (who, replica) in &replicas {
            for tenant in TENANTS {
                if report(replica, who, tenant).await?.is_some() {
                    ran_by.entry(tenant).or_default().push(who.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (tenant, runs) in &ran_by {
        tracing::info!(tenant, runs = runs.len(), on = ?runs.last(), "one replica runs each tick");
    }
    tracing::info!(owned = ?SchedulerLock::owned_scopes(), "scopes this process owns, with their terms");
    SchedulerLock::shutdown().await; // gives every scope back
    Ok(())
}
