//! Leader leases: three replicas campaign for one name; one leads and prints
//! its term while another watches who leads. The leader is killed (its task
//! aborted, as a process stops); another takes over with a higher term. That
//! one steps down when its work is done, and the last takes over at once.
//!
//! `cargo run --example leader` (in memory; with the `redis` feature, use
//! `shedlock::redis::RedisLockProvider` and run the replicas as processes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shedlock::{InMemoryLockProvider, LeaderElection};
use tokio::time::sleep;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let store = InMemoryLockProvider::new();
    let lease = Duration::from_secs(3);

    let watcher = LeaderElection::new(store.clone(), "report-scheduler", lease)?;
    let mut leaders = watcher.observe().await;
    tokio::spawn(async move {
        while leaders.changed().await.is_ok() {
            match leaders.borrow_and_update().clone() {
                Some(leader) => println!("  (observer) leader: term {:?}", leader.term),
                None => println!("  (observer) nobody leads"),
            }
        }
    });

    // How many leaderships there were: the second leader steps down after a
    // short piece of work, the others work on.
    let leaderships = Arc::new(AtomicUsize::new(0));
    let mut elections = Vec::new();
    let mut replicas = Vec::new();
    for replica in 1..=3 {
        let election = Arc::new(
            LeaderElection::new(store.clone(), "report-scheduler", lease)?
                .with_retry_period(Duration::from_millis(100))?
                .with_identity(format!("replica-{replica}")),
        );
        let (running, leaderships) = (election.clone(), leaderships.clone());
        elections.push(election);
        replicas.push(tokio::spawn(async move {
            running
                .run(|leadership| async move {
                    println!(
                        "{} leads with term {}",
                        leadership.identity(),
                        leadership.term()
                    );
                    let work = if leaderships.fetch_add(1, Ordering::SeqCst) == 1 {
                        Duration::from_millis(700)
                    } else {
                        Duration::from_secs(30)
                    };
                    sleep(work).await;
                    println!("{} steps down", leadership.identity());
                })
                .await
        }));
    }

    sleep(Duration::from_millis(700)).await;
    // Kill the replica that leads: its lease is given back in the background.
    if let Some(leader) = elections.iter().position(|election| election.is_leader()) {
        replicas[leader].abort();
        println!("replica-{} was killed", leader + 1);
    }
    sleep(Duration::from_secs(2)).await;
    for replica in replicas {
        replica.abort();
    }
    Ok(())
}
