//! Hand-off latency: from the holder's release to the first line of the job
//! that was waiting for the lock (`wait_for`), p50 and p99.
//!
//! `cargo bench --bench handoff` (a private redis-server is started; set
//! `SHEDLOCK_TEST_REDIS_URL` to use another). `HANDOFFS=N` sets the count;
//! `STORES=postgres,mysql,sqlite` (any of `redis`, `memory`, `postgres`,
//! `mysql`, `sqlite`) picks the stores, all by default.
//! Measured for Redis woken by the release notification (pub/sub), Redis with
//! notifications switched off (the polling fallback), the in-memory provider,
//! and the SQL providers (the test servers of `shedlock-sql`'s tests:
//! `SHEDLOCK_TEST_POSTGRES_URL`, `SHEDLOCK_TEST_MYSQL_URL`): holder and waiter
//! are two providers with pools of their own, either in this process (woken
//! by the in-process release notification) or with the holder in another
//! process (this binary again, told when to lock and release on its standard
//! input), where PostgreSQL's waiter is woken by the release's `NOTIFY` and
//! MariaDB's and SQLite's poll, helped by the lease-end hint.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use shedlock::provider::BoxFuture;
use shedlock::redis::RedisLockProvider;
use shedlock::sql::{MySql, Postgres, SqlLockProvider, SqlServer, SqliteLockProvider};
use shedlock::{
    InMemoryLockProvider, LeaderElection, LockConfiguration, LockError, LockGuard, LockProvider,
    LockingTaskExecutor,
};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::sql::{mysql_url, postgres_url, unique_table_name};

/// A provider whose waiters get no release notification, so they poll.
struct PollingOnly<P>(P);

impl<P: LockProvider> LockProvider for PollingOnly<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        self.0.try_lock(config)
    }
}

async fn measure<P: LockProvider + Clone>(
    label: &str,
    holder: P,
    waiter: P,
    handoffs: usize,
) -> Result<(), LockError> {
    let config = LockConfiguration::new(
        format!("handoff-{label}"),
        Duration::from_secs(30),
        Duration::ZERO,
    )?;
    let waiter = LockingTaskExecutor::new(waiter);
    let mut latencies = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        let Some(guard) = holder.try_lock(&config).await? else {
            return Err(LockError::InvalidConfiguration(
                "lock unexpectedly held".into(),
            ));
        };
        latencies.push(handoff(&waiter, &config, guard.unlock()).await?);
    }
    report(label, &mut latencies);
    Ok(())
}

/// One hand-off: starts `waiter` waiting for `config`, then runs `release`;
/// the time from starting the release to the waiter's first line.
async fn handoff<P: LockProvider + Clone + 'static>(
    waiter: &LockingTaskExecutor<P>,
    config: &LockConfiguration,
    release: impl Future<Output = Result<(), LockError>>,
) -> Result<Duration, LockError> {
    let (waiter, config) = (waiter.clone(), config.clone());
    let waiting = tokio::spawn(async move {
        waiter
            .execute_waiting(&config, Duration::from_secs(10), async { Instant::now() })
            .await
    });
    // Let the waiter make its first attempt and start waiting.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let released_at = Instant::now();
    release.await?;
    match waiting.await {
        Ok(Ok(Some(first_line))) => Ok(first_line - released_at),
        other => Err(LockError::InvalidConfiguration(format!(
            "the waiter did not run: {other:?}"
        ))),
    }
}

/// Prints p50, p99 and the maximum of `latencies`.
fn report(label: &str, latencies: &mut [Duration]) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<44} hand-offs {:>4}   p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
        latencies.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

/// Leader hand-over: from the leader's closure returning (it steps down) to
/// the first line of the next leader's closure, with a candidate campaigning
/// (lease 15 s, retry period 2 s: a hand-over faster than 2 s came from the
/// release, not from the retry).
async fn measure_leader<P: LockProvider + Clone>(
    label: &str,
    leader: P,
    candidate: P,
    handoffs: usize,
) -> Result<(), LockError> {
    let name = format!("leader-handoff-{label}");
    let lease = Duration::from_secs(15);
    let first = std::sync::Arc::new(LeaderElection::new(leader, name.clone(), lease)?);
    let next = std::sync::Arc::new(LeaderElection::new(candidate, name, lease)?);
    let mut latencies = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        let (stepped_tx, stepped_rx) = tokio::sync::oneshot::channel::<()>();
        let leading = first.clone();
        let leader = tokio::spawn(async move {
            leading
                .run(|_| async move {
                    let _ = stepped_rx.await;
                    Instant::now()
                })
                .await
        });
        // The first leads before the candidate starts campaigning.
        while !first.is_leader() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let campaigning = next.clone();
        let candidate =
            tokio::spawn(async move { campaigning.run(|_| async { Instant::now() }).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _ = stepped_tx.send(());
        let stepped_down = leader
            .await
            .map_err(|err| LockError::InvalidConfiguration(err.to_string()))??;
        let took_over = candidate
            .await
            .map_err(|err| LockError::InvalidConfiguration(err.to_string()))??;
        latencies.push(took_over.saturating_duration_since(stepped_down));
    }
    report(&format!("leader hand-over, {label}"), &mut latencies);
    Ok(())
}

/// Holder and waiter on one SQL table, each with a pool of its own: in this
/// process (woken by the in-process notification), then with the holder in
/// another process (`holder`: how that process opens its provider).
async fn measure_sql<P: LockProvider + Clone>(
    label: &str,
    holder: P,
    waiter: P,
    other_process: (&str, &str),
    handoffs: usize,
) -> Result<(), LockError> {
    measure(
        &format!("{label}, same process"),
        holder.clone(),
        waiter.clone(),
        handoffs,
    )
    .await?;
    let (wake_up, holder_spec) = other_process;
    measure_other_process(
        &format!("{label}, other process ({wake_up})"),
        holder_spec,
        waiter,
        handoffs,
    )
    .await
}

/// The environment variable that makes this binary a holder process:
/// `postgres:<table>`, `mysql:<table>` or `sqlite:<file>`.
const HOLDER_ENV: &str = "SHEDLOCK_HANDOFF_HOLDER";

/// Like [`measure`], with the holder in another process: from asking it to
/// release (the time to reach it and its release statement included) to the
/// waiter's first line.
async fn measure_other_process<P: LockProvider + Clone>(
    label: &str,
    holder_spec: &str,
    waiter: P,
    handoffs: usize,
) -> Result<(), LockError> {
    let name = format!("handoff-{}", label.split(',').next().unwrap_or(label));
    let config = LockConfiguration::new(name.clone(), Duration::from_secs(30), Duration::ZERO)?;
    let mut holder = HolderProcess::start(holder_spec)?;
    let waiter = LockingTaskExecutor::new(waiter);
    let mut latencies = Vec::with_capacity(handoffs);
    for _ in 0..handoffs {
        holder.ask(&format!("lock {name}"), "locked")?;
        let release = async { holder.send("release") };
        latencies.push(handoff(&waiter, &config, release).await?);
        holder.expect("released")?;
    }
    report(label, &mut latencies);
    Ok(())
}

/// This binary in another process, holding locks when told (see [`hold`]).
struct HolderProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HolderProcess {
    fn start(spec: &str) -> Result<Self, LockError> {
        let failed = |err: std::io::Error| {
            LockError::InvalidConfiguration(format!("cannot start the holder process: {err}"))
        };
        let mut child = Command::new(std::env::current_exe().map_err(failed)?)
            .env(HOLDER_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LockError::InvalidConfiguration(
                "the holder process has no pipes".into(),
            ));
        };
        Ok(HolderProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn send(&mut self, command: &str) -> Result<(), LockError> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|err| LockError::InvalidConfiguration(format!("holder process: {err}")))
    }

    /// Reads the holder's next answer, which must be `expected`.
    fn expect(&mut self, expected: &str) -> Result<(), LockError> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|err| LockError::InvalidConfiguration(format!("holder process: {err}")))?;
        if line.trim() != expected {
            return Err(LockError::InvalidConfiguration(format!(
                "the holder process answered {line:?}, not {expected:?}"
            )));
        }
        Ok(())
    }

    fn ask(&mut self, command: &str, expected: &str) -> Result<(), LockError> {
        self.send(command)?;
        self.expect(expected)
    }
}

impl Drop for HolderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider of `D` on the server at `url`, locking in `table`.
async fn connect_sql<D: SqlServer>(
    url: &str,
    table: &str,
) -> Result<SqlLockProvider<D>, LockError> {
    SqlLockProvider::<D>::connect(url)
        .await?
        .with_table_name(table)
}

/// Holder and waiter of `D` on one table (created), each with a pool of its own.
async fn sql_pair<D: SqlServer>(
    url: &str,
    table: &str,
) -> Result<(SqlLockProvider<D>, SqlLockProvider<D>), LockError> {
    let (holder, waiter) = (
        connect_sql(url, table).await?,
        connect_sql(url, table).await?,
    );
    holder.create_table_if_missing().await?;
    Ok((holder, waiter))
}

/// The holder process: `lock <name>` takes the lock (answer `locked`),
/// `release` unlocks it (answer `released`); ends with its standard input.
async fn hold(spec: &str) -> Result<(), LockError> {
    let provider: Box<dyn LockProvider> = match spec.split_once(':') {
        Some(("postgres", table)) => {
            Box::new(connect_sql::<Postgres>(&postgres_url(), table).await?)
        }
        Some(("mysql", table)) => Box::new(connect_sql::<MySql>(&mysql_url(), table).await?),
        Some(("sqlite", file)) => Box::new(SqliteLockProvider::open(file).await?),
        _ => {
            return Err(LockError::InvalidConfiguration(format!(
                "{HOLDER_ENV}={spec:?}: expected postgres:<table>, mysql:<table> or sqlite:<file>"
            )));
        }
    };
    let mut held = None;
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|err| LockError::InvalidConfiguration(format!("stdin: {err}")))?;
        let answer = match line.split_once(' ') {
            Some(("lock", name)) => {
                let config = LockConfiguration::new(name, Duration::from_secs(30), Duration::ZERO)?;
                held = provider.try_lock(&config).await?;
                if held.is_some() {
                    "locked"
                } else {
                    "held elsewhere"
                }
            }
            _ if line == "release" => match held.take() {
                Some(guard) => {
                    guard.unlock().await?;
                    "released"
                }
                None => "nothing held",
            },
            _ => "unknown command",
        };
        let _ = writeln!(stdout, "{answer}").and_then(|()| stdout.flush());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    if let Ok(spec) = std::env::var(HOLDER_ENV) {
        return hold(&spec).await;
    }
    let handoffs = std::env::var("HANDOFFS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let stores =
        std::env::var("STORES").unwrap_or_else(|_| "redis,memory,postgres,mysql,sqlite".into());
    let wanted = |store: &str| stores.split(',').any(|s| s.trim() == store);
    if wanted("redis") {
        redis(handoffs).await?;
    }
    if wanted("memory") {
        let memory = InMemoryLockProvider::new();
        measure("in-memory", memory.clone(), memory.clone(), handoffs).await?;
        measure_leader("in-memory", memory.clone(), memory, handoffs).await?;
    }
    let table = unique_table_name("handoff");
    if wanted("postgres") {
        let (holder, waiter) = sql_pair::<Postgres>(&postgres_url(), &table).await?;
        // What the release's NOTIFY saves: the same waiter, polling only.
        measure(
            "postgres, polling only (notifications off)",
            std::sync::Arc::new(PollingOnly(holder.clone())),
            std::sync::Arc::new(PollingOnly(waiter.clone())),
            handoffs.min(100),
        )
        .await?;
        let holder_spec = format!("postgres:{table}");
        let other_process = ("LISTEN/NOTIFY", holder_spec.as_str());
        measure_sql("postgres", holder, waiter, other_process, handoffs).await?;
    }
    if wanted("mysql") {
        let (holder, waiter) = sql_pair::<MySql>(&mysql_url(), &table).await?;
        let holder_spec = format!("mysql:{table}");
        let other_process = ("polling, lease-end hint", holder_spec.as_str());
        measure_sql("mariadb", holder, waiter, other_process, handoffs).await?;
    }
    if wanted("sqlite") {
        let file =
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{table}.db"));
        let (holder, waiter) = (
            SqliteLockProvider::open(&file).await?,
            SqliteLockProvider::open(&file).await?,
        );
        holder.create_table_if_missing().await?;
        let holder_spec = format!("sqlite:{}", file.display());
        let other_process = ("polling, lease-end hint", holder_spec.as_str());
        measure_sql("sqlite (WAL file)", holder, waiter, other_process, handoffs).await?;
    }
    Ok(())
}

async fn redis(handoffs: usize) -> Result<(), LockError> {
    let server = RedisServer::start();
    let connect = || RedisLockProvider::connect(server.url());
    measure(
        "redis, release notification",
        connect().await?,
        connect().await?,
        handoffs,
    )
    .await?;
    measure_leader("redis", connect().await?, connect().await?, handoffs).await?;
    let (holder, waiter) = (connect().await?, connect().await?);
    measure(
        "redis, polling fallback",
        std::sync::Arc::new(PollingOnly(holder)),
        std::sync::Arc::new(PollingOnly(waiter)),
        handoffs.min(100),
    )
    .await
}
