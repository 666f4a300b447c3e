//! A small web service whose replicas share a background job: every replica
//! serves HTTP, and each tick of the job runs on one of them. Ctrl-C stops
//! the server gracefully, then the job: a run in progress is cancelled and
//! its lock given back before the process exits, so the next replica's tick
//! is not skipped.
//!
//! Needs a Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). Run two
//! replicas on two ports and ask either one:
//!
//! ```text
//! PORT=3000 cargo run --example web_service
//! PORT=3001 cargo run --example web_service
//! curl http://127.0.0.1:3000/
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use shedlock::redis::RedisLockProvider;
use shedlock::{SchedulerLock, scheduler_lock};
use shutdown::Shutdown;
use tracing_subscriber::EnvFilter;

/// How many ticks of the job this replica ran.
#[derive(Default)]
struct Stats {
    runs: AtomicU64,
}

/// The background job: refreshes a cache, say. One replica per tick.
#[scheduler_lock(
    name = "refresh-cache",
    lock_at_most_for = "1m",
    lock_at_least_for = "1s"
)]
async fn refresh_cache(stats: &Stats) {
    tracing::info!("refreshing the cache");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stats.runs.fetch_add(1, Ordering::Relaxed);
}

async fn status(State(stats): State<Arc<Stats>>) -> String {
    format!(
        "this replica ran the job {} times\n",
        stats.runs.load(Ordering::Relaxed)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    SchedulerLock::builder(RedisLockProvider::connect(&url).await?)
        .default_lock_at_most_for(Duration::from_secs(60))
        .install()?;

    let stats = Arc::new(Stats::default());
    let shutdown = Shutdown::default();

    // The job's loop: a tick every 5 s until shutdown; a run in progress at
    // shutdown is dropped, which gives its lock back.
    let job = tokio::spawn({
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = shutdown.requested() => break,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    () = shutdown.requested() => break,
                    ran = refresh_cache(&stats) => match ran {
                        Ok(Some(())) => {}
                        Ok(None) => tracing::debug!("another replica refreshes the cache"),
                        Err(err) => tracing::warn!(error = %err, "the cache was not refreshed"),
                    },
                }
            }
        }
    });

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!(address = %listener.local_addr()?, "serving");
    let app = Router::new().route("/", get(status)).with_state(stats);
    axum::serve(listener, app)
        .with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move {
                let _ = tokio::signal::ctrl_c().await;
                shutdown.request();
            }
        })
        .await?;

    // The server has stopped; wait for the job's loop, then give back the
    // job scopes this process owns, if any.
    job.await?;
    SchedulerLock::shutdown().await;
    Ok(())
}

/// A one-shot shutdown signal shared by the server and the job.
mod shutdown {
    use std::sync::Arc;

    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct Shutdown(Arc<watch::Sender<bool>>);

    impl Default for Shutdown {
        fn default() -> Self {
            Shutdown(Arc::new(watch::channel(false).0))
        }
    }

    impl Shutdown {
        pub fn request(&self) {
            self.0.send_replace(true);
        }

        pub async fn requested(&self) {
            let mut seen = self.0.subscribe();
            let _ = seen.wait_for(|requested| *requested).await;
        }
    }
}
