//! The cost of a lock cycle (acquire + release) next to its floor: the raw
//! `redis` crate with its default settings
//! (`Client::get_multiplexed_async_connection()`: redis 1.8's defaults)
//! sending only `SET key value NX PX 30000` and one compare-and-delete
//! script, in the same process; the project is `RedisLockProvider::connect(url)`.
//!
//! `cargo bench --bench lock_cycle` (a private redis-server is started; set
//! `SHEDLOCK_TEST_REDIS_URL` to use another). `CYCLES=N` sets the serial
//! sample count per variant (default 10,000 after warm-up), `MEMORY_CALLS=N`
//! the in-memory calls per round (default 200,000), `ONLY=a,b` the scenarios;
//! with `--features metrics`, `METRICS_RECORDER=prometheus` records
//! shedlock's metrics into a Prometheus recorder while measuring.
//!
//! The `sql` scenario measures the SQL providers (see `sql.rs`; `SQL_STORES`
//! picks the databases), each against the same statements sent raw.
//!
//! `ONLY=scale` and `ONLY=sql_scale`: how cost grows with load (see
//! `scale.rs`; `SCALE_TASKS=1,16` and `SCALE_PROCESSES=1` pick the Redis runs).
//!
//! Scenarios: serial cycles (p50/p99) through `try_lock` + `unlock`, the
//! executor and the attribute; 256 tasks on distinct names sharing one
//! provider, spawned (`concurrent`) or 256 loops joined in one task for 3 s
//! each, alternating with the floor (`joined`); 10,000 per-tenant names (`name = "tenant-{id}"`) run once each;
//! 64 callers contending for one name; the in-memory provider's overhead per
//! annotated call; and the Redis commands of a run, counted by the server
//! (`INFO commandstats`). It measures only: that exactly one of the 64 wins
//! and that a plain run takes two round trips are tests
//! (`shedlock-redis/tests/lock_cycle.rs`).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Script};
use shedlock::redis::RedisLockProvider;
use shedlock::{InMemoryLockProvider, LockingTaskExecutor};
use shedlock_test_support::redis::RedisServer;

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// Tasks sharing one connection in the throughput scenarios.
pub(crate) const TASKS: usize = 256;
pub(crate) const TENANTS: usize = 10_000;
pub(crate) const CONTENDERS: usize = 64;

mod floor;
mod paths;
mod report;
mod scale;
mod scenarios;
mod server_counts;
mod sql;
mod sql_floor;

use floor::{FLOOR_RELEASE, Floor};
use paths::Bench;
use report::print_table;
use scenarios::{concurrent, contention, in_memory, joined, serial, tenants};
use server_counts::commands_per_run;

#[shedlock::scheduler_lock(name = "serial-attribute", lock_at_most_for = "30s", provider = provider)]
pub(crate) async fn serial_job(provider: &RedisLockProvider) -> u64 {
    black_box(1)
}

#[shedlock::scheduler_lock(name = "tenant-{id}", lock_at_most_for = "30s", provider = provider)]
pub(crate) async fn tenant_job(provider: &RedisLockProvider, id: usize) -> usize {
    black_box(id)
}

#[shedlock::scheduler_lock(name = "memory-overhead", lock_at_most_for = "30s", provider = memory)]
pub(crate) async fn annotated_memory_job(memory: &InMemoryLockProvider, x: u64) -> u64 {
    black_box(x)
}

/// The same body without the attribute.
pub(crate) async fn bare_memory_job(memory: &InMemoryLockProvider, x: u64) -> u64 {
    black_box(memory);
    black_box(x)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lock_cycle: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> BenchResult<()> {
    // `METRICS_RECORDER=prometheus` (with `--features metrics`): shedlock's
    // metrics go to a Prometheus recorder while measuring; otherwise to none.
    if std::env::var("METRICS_RECORDER").as_deref() == Ok("prometheus") {
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    }
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    // Another process of a scale run: that run alone (a PostgreSQL one
    // needs no Redis).
    let child = std::env::var(scale::CHILD_ENV).ok();
    if let Some(spec) = &child
        && !spec.starts_with(<Bench as scale::Scaled>::STORE)
    {
        return sql::scale_child(spec).await;
    }
    let server = RedisServer::start();
    // The floor is the plain client as a user gets it: default settings.
    let client = Client::open(server.url())?;
    let provider = RedisLockProvider::connect(server.url()).await?;
    let config = RedisLockProvider::default_connection_config();
    let floor = Floor {
        connection: client.get_multiplexed_async_connection().await?,
        release: Arc::new(Script::new(FLOOR_RELEASE)),
        scripted_acquire: Arc::new(Script::new(
            "local held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET') \
             return {held or '', redis.call('EXISTS', KEYS[2], KEYS[3])}",
        )),
        locked_by: provider.locked_by().into(),
    };
    let bench = Bench {
        executor: LockingTaskExecutor::new(provider.clone()),
        executor_with_history: LockingTaskExecutor::new(provider.clone().with_run_history(true)),
        provider,
        floor,
        url: server.url().to_owned(),
    };
    if let Some(spec) = &child {
        return scale::child(spec, &bench).await;
    }
    let mut admin = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut rows = Vec::new();

    // `ONLY=serial,concurrent` runs some scenarios (for profiling); all by default.
    let only = std::env::var("ONLY").unwrap_or_default();
    let runs = |scenario: &str| only.is_empty() || only.split(',').any(|s| s == scenario);
    if runs("serial") {
        serial(&bench, cycles, &mut rows).await?;
    }
    if runs("concurrent") {
        concurrent(&bench, &mut rows).await?;
    }
    if runs("joined") {
        joined(&bench, &mut rows).await?;
    }
    if runs("tenants") {
        tenants(&bench, &mut rows).await?;
    }
    if runs("contention") {
        contention(&bench, &mut rows).await?;
    }
    if runs("memory") {
        in_memory(&mut rows).await?;
    }
    if runs("commands") {
        commands_per_run(&bench, &mut admin, &mut rows).await?;
    }
    if runs("sql") {
        sql::sql_cycles(cycles, &mut rows).await?;
    }
    if runs("scale") {
        let tasks = scale::counts("SCALE_TASKS", &[1, 16, 256, 4096])?;
        let processes = scale::counts("SCALE_PROCESSES", &[1, 4])?;
        scale::scale(&bench, &tasks, &processes, &mut rows).await?;
    }
    if runs("sql_scale") {
        sql::sql_scale(&mut rows).await?;
    }
    print_table(&rows);
    Ok(())
}
