//! Job scopes across four OS processes, with their locks on Redis and on
//! PostgreSQL: 40 scopes spread to 10 ± 2 per process, a SIGKILLed
//! process's scopes are taken over within lease duration + sweep interval,
//! no two processes ever run one scope's job at the same time, and a
//! graceful shutdown gives every scope back at once. A variant pauses an
//! owner (SIGSTOP) for longer than the lease: after SIGCONT no run starts on
//! its stale ownership, and its term is below the new owner's.
//!
//! The processes are this test binary again, running only `scope_worker`
//! (an ignored test that does nothing unless `URL_ENV` is set). Runs and
//! the stop flag go through a private Redis in every variant.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use shedlock::admin::LockAdmin;
use shedlock::redis::RedisLockProvider;
use shedlock::sql::PostgresLockProvider;
use shedlock::{LockProvider, SchedulerLock, scheduler_lock};
use shedlock_test_support::Worker;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{postgres, postgres_url, unique_table_name};
use shedlock_test_support::ticks::{finish_workers, spawn_workers};

const WORKERS: usize = 4;
const SCOPES: usize = 40;
const LEASE: Duration = Duration::from_secs(2);
const SWEEP: Duration = Duration::from_millis(250);
/// How often each worker ticks every scope's job.
const TICK: Duration = Duration::from_millis(50);
/// The Redis list every run is pushed to: `scope worker term start_ms end_ms`.
const RUNS: &str = "runs";
/// Set by the test when the workers are to shut down gracefully.
const STOP: &str = "stop";

/// The Redis that carries runs and the stop flag.
const URL_ENV: &str = "SHEDLOCK_SCOPES_REDIS_URL";
/// Where the locks are: a PostgreSQL URL, or (unset) the Redis above.
const STORE_ENV: &str = "SHEDLOCK_SCOPES_STORE_URL";
/// The PostgreSQL table of the locks.
const TABLE_ENV: &str = "SHEDLOCK_SCOPES_TABLE";
const WORKER_ENV: &str = "SHEDLOCK_SCOPES_WORKER";
/// How many scopes the workers tick (`SCOPES` unless set).
const SCOPES_ENV: &str = "SHEDLOCK_SCOPES_COUNT";

/// One scenario at a time: their worker processes share two cores, and the
/// takeover bounds assume the processes get them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |now| now.as_millis())
}

/// A scope's job: records the run with its term (the scope's fencing token).
#[scheduler_lock(
    name = "tenant-job-{scope}",
    scope = "tenant-{scope}",
    lock_at_most_for = "30s"
)]
async fn tenant_job(
    scope: usize,
    worker: &str,
    mut runs: MultiplexedConnection,
) -> anyhow::Result<()> {
    let start = now_ms();
    let term = match shedlock::current_lock() {
        Some(lock) => lock.fencing_token().await?,
        None => anyhow::bail!("a scoped run without its lock"),
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let end = now_ms();
    runs.rpush(RUNS, format!("{scope} {worker} {term} {start} {end}"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_spread_move_on_a_crash_and_come_back_on_shutdown() -> anyhow::Result<()> {
    let server = RedisServer::start();
    let admin = RedisLockProvider::connect(server.url()).await?;
    scopes_spread_move_and_come_back(&server, &admin, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_on_postgres_spread_move_on_a_crash_and_come_back_on_shutdown() -> anyhow::Result<()>
{
    let server = RedisServer::start();
    let store = PostgresStore::new().await;
    scopes_spread_move_and_come_back(&server, &store.admin, &store.envs()).await
}

/// The PostgreSQL test database, on a table of this test's own (created):
/// the test's provider, and where the workers find it.
struct PostgresStore {
    admin: PostgresLockProvider,
    url: String,
    table: String,
}

impl PostgresStore {
    async fn new() -> PostgresStore {
        let table = unique_table_name("scopes");
        PostgresStore {
            admin: postgres(&table).await,
            url: postgres_url(),
            table,
        }
    }

    /// The workers' variables naming the store.
    fn envs(&self) -> [(&str, &str); 2] {
        [(STORE_ENV, &self.url), (TABLE_ENV, &self.table)]
    }
}

/// This test's turn (the process tests run one at a time), a connection to
/// `server`, and `count` scope workers on it, with `envs` (their store).
async fn scope_workers(
    server: &RedisServer,
    count: usize,
    envs: &[(&str, &str)],
) -> anyhow::Result<(
    tokio::sync::MutexGuard<'static, ()>,
    MultiplexedConnection,
    Vec<Worker>,
)> {
    let alone = ONE_AT_A_TIME.lock().await;
    let redis = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mut all = vec![(URL_ENV, server.url())];
    all.extend_from_slice(envs);
    let workers = spawn_workers("scope_worker", count, Some(WORKER_ENV), &all);
    Ok((alone, redis, workers))
}

async fn scopes_spread_move_and_come_back<A: LockAdmin>(
    server: &RedisServer,
    admin: &A,
    store: &[(&str, &str)],
) -> anyhow::Result<()> {
    let (_alone, mut redis, mut workers) = scope_workers(server, WORKERS, store).await?;
    // From the workers' start (their spawn takes milliseconds), not from
    // the wait for this test's turn.
    let started = Instant::now();

    // Convergence: every scope owned, 10 ± 2 each.
    let converged = loop {
        let owners = owners(admin, SCOPES).await?;
        let counts = counts(&owners);
        if owners.len() == SCOPES && counts.len() == WORKERS {
            break counts;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the scopes did not converge: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let convergence = started.elapsed();
    println!("converged after {convergence:?}: {converged:?}");
    for (worker, count) in &converged {
        anyhow::ensure!(
            (8..=12).contains(count),
            "{worker} owns {count} scopes, not 10 ± 2: {converged:?}"
        );
    }

    // A crash: the killed worker's scopes move to the others.
    let owned_before = owners(admin, SCOPES).await?;
    let victim_scopes: Vec<usize> = owned_before
        .iter()
        .filter(|(_, owner)| owner.as_str() == "worker-0")
        .map(|(scope, _)| *scope)
        .collect();
    workers[0].kill();
    let killed = Instant::now();
    let mut taken_at: HashMap<usize, Duration> = HashMap::new();
    while taken_at.len() < victim_scopes.len() {
        // Taken by the time this read started, or during it: counted from
        // its start, so a read slowed by a loaded machine adds nothing.
        let read_from = killed.elapsed();
        let owners = owners(admin, SCOPES).await?;
        for scope in &victim_scopes {
            if let Some(owner) = owners.get(scope)
                && owner != "worker-0"
            {
                taken_at.entry(*scope).or_insert(read_from);
            }
        }
        anyhow::ensure!(
            killed.elapsed() < LEASE + SWEEP * 4,
            "scopes of the killed worker not taken over: {taken_at:?} of {victim_scopes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slowest = taken_at.values().max().copied().unwrap_or_default();
    let fastest = taken_at.values().min().copied().unwrap_or_default();
    let after = counts(&owners(admin, SCOPES).await?);
    println!(
        "after SIGKILL of worker-0: its {} scopes taken over in {fastest:?}..{slowest:?} \
         (lease {LEASE:?} + sweep {SWEEP:?}); owners now {after:?}",
        victim_scopes.len()
    );
    // Measured by polling (every 20 ms, from the start of each read): the
    // bound, plus one poll and one tick.
    anyhow::ensure!(
        slowest <= LEASE + SWEEP + TICK + Duration::from_millis(150),
        "takeover took {slowest:?}, over lease + sweep interval"
    );

    // A graceful shutdown: every scope comes back at once.
    redis.set(STOP, 1).await?;
    let survivors = workers.split_off(1);
    let outputs = finish_workers(survivors, Duration::from_secs(20), &["worker "]).await;
    let left = owners(admin, SCOPES).await?;
    if !left.is_empty() {
        let mut states = Vec::new();
        for scope in left.keys() {
            states.push(admin.lock_state(&format!("scope:tenant-{scope}")).await?);
        }
        anyhow::bail!(
            "scopes still held after a graceful shutdown: {states:#?}\nthe workers' output:\n{}",
            outputs.join("\n")
        );
    }

    // No two workers ever ran one scope's job at once; terms rise per scope.
    let runs = redis.lrange(RUNS, 0, -1).await?;
    check_runs(&runs, None)?;
    println!("{} runs checked", runs.len());
    Ok(())
}

/// Scopes of the paused-owner variant: few, so each worker owns some soon.
const PAUSED_SCOPES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_runs_nothing_on_its_stale_ownership_redis()
-> anyhow::Result<()> {
    let server = RedisServer::start();
    let admin = RedisLockProvider::connect(server.url()).await?;
    an_owner_paused_past_its_lease_runs_nothing_stale(&server, &admin, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_runs_nothing_on_its_stale_ownership_postgres()
-> anyhow::Result<()> {
    let server = RedisServer::start();
    let store = PostgresStore::new().await;
    an_owner_paused_past_its_lease_runs_nothing_stale(&server, &store.admin, &store.envs()).await
}

/// Two workers; once worker-0 owns a scope it is stopped (SIGSTOP) for the
/// lease and a second more, while worker-1 takes its scopes over; then it
/// goes on (SIGCONT). Its ownership is stale by then: no run of it starts
/// on it (a run started on a stale term would come after the new owner's,
/// with a lower term), and the runs of different owners never overlap but
/// for a run the pause froze midway (the case fencing tokens are for: its
/// term is below the new owner's).
async fn an_owner_paused_past_its_lease_runs_nothing_stale<A: LockAdmin>(
    server: &RedisServer,
    admin: &A,
    store: &[(&str, &str)],
) -> anyhow::Result<()> {
    let scopes = PAUSED_SCOPES.to_string();
    let mut envs = vec![(SCOPES_ENV, scopes.as_str())];
    envs.extend_from_slice(store);
    let (_alone, mut redis, workers) = scope_workers(server, 2, &envs).await?;
    let started = Instant::now();
    let paused_scopes: Vec<usize> = loop {
        let owned: Vec<usize> = owners(admin, PAUSED_SCOPES)
            .await?
            .into_iter()
            .filter(|(_, owner)| owner == "worker-0")
            .map(|(scope, _)| scope)
            .collect();
        if !owned.is_empty() {
            break owned;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "worker-0 never owned a scope"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let it run a few ticks on its scopes, then freeze it.
    tokio::time::sleep(TICK * 4).await;
    workers[0].pause();
    let paused = Instant::now();
    let paused_ms = now_ms();
    // Stopped past its lease, until worker-1 has taken its scopes over.
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    loop {
        let owners_now = owners(admin, PAUSED_SCOPES).await?;
        let taken = paused_scopes.iter().all(|scope| {
            owners_now
                .get(scope)
                .is_some_and(|owner| owner == "worker-1")
        });
        if taken {
            break;
        }
        anyhow::ensure!(
            paused.elapsed() < LEASE + Duration::from_secs(10),
            "scopes {paused_scopes:?} not taken over while their owner was stopped: {owners_now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped_for = paused.elapsed();
    workers[0].resume();
    // Both go on ticking for a while after the resume.
    tokio::time::sleep(LEASE).await;
    redis.set(STOP, 1).await?;
    finish_workers(workers, Duration::from_secs(20), &["worker "]).await;
    let runs = redis.lrange(RUNS, 0, -1).await?;
    check_runs(&runs, Some(paused_ms))?;
    println!(
        "worker-0 stopped for {stopped_for:?} owning scopes {paused_scopes:?}; {} runs checked",
        runs.len()
    );
    Ok(())
}

/// Which worker owns each of the first `scopes` scopes, as the store shows it.
async fn owners<A: LockAdmin>(admin: &A, scopes: usize) -> anyhow::Result<BTreeMap<usize, String>> {
    let mut owners = BTreeMap::new();
    for scope in 0..scopes {
        let state = admin.lock_state(&format!("scope:tenant-{scope}")).await?;
        if let Some(holder) = state.holders.first() {
            owners.insert(scope, holder.locked_by.clone());
        }
    }
    Ok(owners)
}

fn counts(owners: &BTreeMap<usize, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.values() {
        *counts.entry(owner.clone()).or_default() += 1;
    }
    counts
}

/// Per scope, sorted by start: runs by different workers never overlap, and
/// a new owner's term is greater than the last one's. `paused_ms`: worker-0
/// was stopped then, so one run of it that started before may overlap the
/// next owner's (frozen midway), never one that started after.
fn check_runs(runs: &[String], paused_ms: Option<u128>) -> anyhow::Result<()> {
    let mut by_scope: HashMap<&str, Vec<(u128, u128, &str, u64)>> = HashMap::new();
    for run in runs {
        let fields: Vec<&str> = run.split(' ').collect();
        let [scope, worker, term, start, end] = fields[..] else {
            anyhow::bail!("malformed run {run:?}");
        };
        by_scope.entry(scope).or_default().push((
            start.parse()?,
            end.parse()?,
            worker,
            term.parse()?,
        ));
    }
    for (scope, runs) in &mut by_scope {
        runs.sort_unstable();
        for pair in runs.windows(2) {
            let [(_, end, worker, term), (start, _, next_worker, next_term)] = pair else {
                continue;
            };
            let frozen_midway = *worker == "worker-0"
                && paused_ms
                    .is_some_and(|paused| runs_started_before(pair, paused) && *end > paused);
            if worker != next_worker {
                anyhow::ensure!(
                    start >= end || frozen_midway,
                    "scope {scope}: {worker} and {next_worker} ran at once: {pair:?}"
                );
                anyhow::ensure!(
                    next_term > term,
                    "scope {scope}: the new owner's term did not rise: {pair:?}"
                );
            } else {
                anyhow::ensure!(next_term >= term, "scope {scope}: term fell: {pair:?}");
            }
        }
    }
    Ok(())
}

/// Whether the first run of `pair` started before `instant_ms`.
fn runs_started_before(pair: &[(u128, u128, &str, u64)], instant_ms: u128) -> bool {
    pair.first().is_some_and(|(start, ..)| *start < instant_ms)
}

/// One worker process: ticks every scope's job every `TICK` until the test
/// sets `STOP`, then shuts down gracefully. Does nothing as a plain test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of scopes_spread_move_on_a_crash_and_come_back_on_shutdown"]
async fn scope_worker() -> anyhow::Result<()> {
    let Ok(url) = std::env::var(URL_ENV) else {
        return Ok(());
    };
    let worker = format!("worker-{}", std::env::var(WORKER_ENV).unwrap_or_default());
    // What happened to its scopes (owned, given up, lost: a few lines), on
    // its output, which a failing test shows.
    tracing_subscriber::fmt()
        .with_env_filter("shedlock_core=info")
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let scopes = match std::env::var(SCOPES_ENV) {
        Ok(count) => count.parse()?,
        Err(_) => SCOPES,
    };
    let provider: Box<dyn LockProvider> = match std::env::var(STORE_ENV) {
        Ok(store) => Box::new(
            PostgresLockProvider::connect(&store)
                .await?
                .with_table_name(&std::env::var(TABLE_ENV)?)?
                .with_locked_by(worker.clone()),
        ),
        Err(_) => Box::new(
            RedisLockProvider::connect(&url)
                .await?
                .with_locked_by(worker.clone()),
        ),
    };
    SchedulerLock::builder(provider)
        .default_lock_at_most_for(Duration::from_secs(30))
        .scope_lease_duration(LEASE)
        .scope_sweep_interval(SWEEP)
        .install()?;
    // The test's own channel: a request out while the process is stopped
    // (SIGSTOP, the paused-owner variant) must not time out when it resumes.
    let reporting =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut redis = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection_with_config(&reporting)
        .await?;
    let (mut ran, mut skipped) = (0, 0);
    while !redis.exists(STOP).await? {
        for scope in 0..scopes {
            match tenant_job(scope, &worker, redis.clone()).await? {
                Some(run) => {
                    run?;
                    ran += 1;
                }
                None => skipped += 1,
            }
        }
        tokio::time::sleep(TICK).await;
    }
    let owned = SchedulerLock::owned_scopes().len();
    SchedulerLock::shutdown().await;
    println!("worker {worker}: ran {ran}, skipped {skipped}, gave up {owned} scopes");
    Ok(())
}
