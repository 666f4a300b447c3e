//! Metrics of locked jobs, served for Prometheus at `/metrics` while three
//! simulated replicas run them.
//!
//! ```text
//! cargo run --example metrics --features metrics            # until Ctrl-C
//! RUN_FOR=10 cargo run --example metrics --features metrics # 10 seconds, then print the scrape
//! curl -s http://127.0.0.1:9000/metrics | grep shedlock     # meanwhile, from another shell
//! ```
//!
//! `METRICS_ADDR` moves the endpoint (default `127.0.0.1:9000`). The replicas
//! are tasks sharing one `InMemoryLockProvider` store; real replicas share a
//! Redis or a database, and each serves its own `/metrics`: sum over them.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use shedlock::{InMemoryLockProvider, scheduler_lock};
use tokio::time::{MissedTickBehavior, interval, sleep};
use tracing_subscriber::EnvFilter;

const REPLICAS: usize = 3;

/// Every replica fires it every second: one runs it, two skip.
#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10s", lock_at_least_for = "500ms", provider = locks)]
async fn nightly_report(locks: &InMemoryLockProvider) {
    sleep(Duration::from_millis(200)).await;
}

/// A lock per region, labelled by the template `report-{region}`.
#[scheduler_lock(name = "report-{region}", lock_at_most_for = "10s", provider = locks)]
async fn regional_report(locks: &InMemoryLockProvider, region: &str) {
    sleep(Duration::from_millis(50 * region.len() as u64)).await;
}

/// Longer than its lease: keep-alive extends it, and the other replicas wait
/// for their turn instead of skipping.
#[scheduler_lock(
    name = "index-rebuild",
    lock_at_most_for = "600ms",
    wait_for = "2s",
    keep_alive = true,
    provider = locks
)]
async fn index_rebuild(locks: &InMemoryLockProvider) {
    sleep(Duration::from_millis(900)).await;
}

/// One replica's scheduler: every job, every second, each tick's jobs in a
/// task of their own so that a long one does not delay the next tick.
async fn replica(locks: InMemoryLockProvider) {
    let mut ticks = interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let locks = locks.clone();
        tokio::spawn(async move {
            let (nightly, rebuild, eu, us, ap) = tokio::join!(
                nightly_report(&locks),
                index_rebuild(&locks),
                regional_report(&locks, "eu"),
                regional_report(&locks, "us"),
                regional_report(&locks, "ap"),
            );
            // Ok(None), skipped, is the normal case on two replicas of three.
            for failed in [nightly, rebuild, eu, us, ap]
                .into_iter()
                .filter_map(Result::err)
            {
                eprintln!("lock store error: {failed}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=shedlock=debug shows every attempt, acquisition, skip and release.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9000".to_owned())
        .parse()?;
    // Histograms with buckets (`_bucket`, `_sum`, `_count`) rather than summaries.
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.001, 0.01, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0],
        )?
        .build()?;
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    tokio::spawn(exporter);
    shedlock::metrics::describe();
    println!("serving http://{addr}/metrics; {REPLICAS} replicas run their jobs every second");

    let locks = InMemoryLockProvider::new();
    let mut replicas = tokio::task::JoinSet::new();
    for _ in 0..REPLICAS {
        replicas.spawn(replica(locks.clone())); // clones share one store
    }
    match std::env::var("RUN_FOR") {
        Ok(secs) => sleep(Duration::from_secs(secs.parse()?)).await,
        Err(_) => tokio::signal::ctrl_c().await?,
    }
    replicas.shutdown().await;
    // What Prometheus would scrape now.
    for line in scrape
        .render()
        .lines()
        .filter(|line| line.contains("shedlock_"))
    {
        println!("{line}");
    }
    Ok(())
}
