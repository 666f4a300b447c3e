//! The cost of a lock cycle (acquire + release) next to its floor: the raw
//! `redis` crate sending only `SET key value NX PX 30000` and one
//! compare-and-delete script, over the same kind of connection (a
//! `MultiplexedConnection` with the same settings) in the same process.
//!
//! `cargo bench --bench lock_cycle` (a private redis-server is started; set
//! `SHEDLOCK_TEST_REDIS_URL` to use another). `CYCLES=N` sets the serial
//! sample count per variant (default 10,000 after warm-up), `MEMORY_CALLS=N`
//! the in-memory calls per round (default 200,000), `ONLY=a,b` the scenarios.
//!
//! Scenarios: serial cycles (p50/p99) through `try_lock` + `unlock`, the
//! executor and the attribute; 256 tasks on distinct names sharing one
//! provider; 10,000 per-tenant names (`name = "tenant-{id}"`) run once each;
//! 64 callers contending for one name (exactly one must win, else the bench
//! exits non-zero); the in-memory provider's overhead per annotated call; and
//! the Redis commands of a run, counted by the server (`INFO commandstats`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::{Client, Script, Value};
use shedlock::redis::{DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisLockProvider};
use shedlock::{
    ExecutionOptions, InMemoryLockProvider, LockConfiguration, LockProvider, LockingTaskExecutor,
};
use shedlock_test_support::redis::RedisServer;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const LEASE: Duration = Duration::from_secs(30);
/// Tasks sharing one connection in the throughput scenarios.
const TASKS: usize = 256;
const TENANTS: usize = 10_000;
const CONTENDERS: usize = 64;

/// Compare-and-delete: the least a safe release can send.
const FLOOR_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// The raw client: exactly two commands per cycle, nothing else (and, for
/// the breakdown, shedlock's own commands sent the same way).
#[derive(Clone)]
struct Floor {
    connection: MultiplexedConnection,
    release: Arc<Script>,
    /// shedlock's release script, sent by the raw client with shedlock's
    /// acquisition commands: what they cost the server, without any of
    /// shedlock's client-side work.
    shedlock_release: Arc<Script>,
    /// An acquisition as one short script (`SET NX PX GET` and `EXISTS` of
    /// the settings and holders keys inside): a shape measured against the
    /// two pipelined commands.
    scripted_acquire: Arc<Script>,
}

/// Unique values for the floor's acquisitions (a counter: the cheapest unique value).
static FLOOR_VALUE: AtomicU64 = AtomicU64::new(0);

impl Floor {
    /// `SET NX PX`; the value to release with when acquired.
    async fn acquire(&self, key: &str) -> BenchResult<Option<u64>> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        let reply: Value = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok((reply != Value::Nil).then_some(value))
    }

    async fn release(&self, key: &str, value: u64) -> BenchResult<()> {
        let released: i64 = self
            .release
            .key(key)
            .arg(value)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if released != 1 {
            return Err(format!("floor release of {key} found another value").into());
        }
        Ok(())
    }

    /// `SET key value NX PX` (with `GET` when `get`) and `EXISTS` of a
    /// settings and a holders hash in one round trip, as shedlock's plain
    /// acquisition sends them; the value when the lock was taken.
    async fn acquire_checked(&self, key: &str, get: bool) -> BenchResult<u64> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64);
        if get {
            set.arg("GET");
        }
        let (previous, either): (Value, i64) = redis::pipe()
            .add_command(set)
            .cmd("EXISTS")
            .arg(format!("{{{key}}}:settings"))
            .arg(format!("{{{key}}}:holders"))
            .query_async(&mut self.connection.clone())
            .await?;
        // Taken: `OK`, or with `GET` no previous value.
        let taken = if get {
            previous == Value::Nil
        } else {
            previous != Value::Nil
        };
        if !taken || either != 0 {
            return Err(format!("checked acquisition of {key} failed").into());
        }
        Ok(value)
    }

    /// shedlock's acquisition (`SET NX PX GET` + `EXISTS`, one round
    /// trip) and release script, with fixed keys: what shedlock's commands
    /// cost, without its client-side work.
    async fn shedlock_commands_cycle(&self, key: &str) -> BenchResult<()> {
        let value = self.acquire_checked(key, true).await?;
        let released: i64 = self
            .shedlock_release
            .key(key)
            .arg(value)
            .arg(0)
            .arg("shedlock:released") // the provider's release channel
            .invoke_async(&mut self.connection.clone())
            .await?;
        if released != 1 {
            return Err(format!("raw shedlock-command release of {key} failed").into());
        }
        Ok(())
    }

    /// The acquisition as one short script (the same commands inside), then
    /// the floor's release.
    async fn one_script_cycle(&self, key: &str) -> BenchResult<()> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        let (held, either): (String, i64) = self
            .scripted_acquire
            .key(key)
            .key(format!("{{{key}}}:settings"))
            .key(format!("{{{key}}}:holders"))
            .arg(value)
            .arg(LEASE.as_millis() as u64)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if !held.is_empty() || either != 0 {
            return Err(format!("one-script acquisition of {key} failed").into());
        }
        self.release(key, value).await
    }

    /// The floor with the read that keeps paused locks and shared holders
    /// safe, in the acquisition's round trip, then the floor's release: what
    /// that read costs by itself.
    async fn checked_cycle(&self, key: &str) -> BenchResult<()> {
        let value = self.acquire_checked(key, false).await?;
        self.release(key, value).await
    }

    async fn cycle(&self, key: &str) -> BenchResult<()> {
        let value = self
            .acquire(key)
            .await?
            .ok_or_else(|| format!("floor key {key} unexpectedly held"))?;
        self.release(key, value).await
    }
}

#[shedlock::scheduler_lock(name = "serial-attribute", lock_at_most_for = "30s", provider = provider)]
async fn serial_job(provider: &RedisLockProvider) -> u64 {
    black_box(1)
}

#[shedlock::scheduler_lock(name = "tenant-{id}", lock_at_most_for = "30s", provider = provider)]
async fn tenant_job(provider: &RedisLockProvider, id: usize) -> usize {
    black_box(id)
}

#[shedlock::scheduler_lock(name = "memory-overhead", lock_at_most_for = "30s", provider = memory)]
async fn annotated_memory_job(memory: &InMemoryLockProvider, x: u64) -> u64 {
    black_box(x)
}

/// The same body without the attribute.
async fn bare_memory_job(memory: &InMemoryLockProvider, x: u64) -> u64 {
    black_box(memory);
    black_box(x)
}

fn unexpected<T: std::fmt::Debug>(what: &str, got: T) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{what}: unexpected outcome {got:?}").into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Floor,
    FloorWithChecks,
    FloorOneScript,
    RawCommands,
    TryLock,
    TryLockWithToken,
    Executor,
    Attribute,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Floor => "floor: SET NX PX + compare-and-delete",
            Path::FloorWithChecks => "floor + EXISTS settings holders",
            Path::FloorOneScript => "floor, acquiring by one script (SET + EXISTS)",
            Path::RawCommands => "raw client sending shedlock's commands",
            Path::TryLock => "LockProvider::try_lock + LockGuard::unlock",
            Path::TryLockWithToken => "try_lock + fencing_token + unlock (3 trips)",
            Path::Executor => "LockingTaskExecutor::execute",
            Path::Attribute => "#[scheduler_lock(provider = ..)] fn",
        }
    }
}

/// Everything one scenario needs, shared by every task.
#[derive(Clone)]
struct Bench {
    provider: RedisLockProvider,
    executor: LockingTaskExecutor<RedisLockProvider>,
    floor: Floor,
}

impl Bench {
    /// One acquire + release of `config` (or of the floor's `floor_key`) through `path`.
    async fn cycle(
        &self,
        path: Path,
        config: &LockConfiguration,
        floor_key: &str,
    ) -> BenchResult<()> {
        match path {
            Path::Floor => self.floor.cycle(floor_key).await,
            Path::FloorWithChecks => self.floor.checked_cycle(floor_key).await,
            Path::FloorOneScript => self.floor.one_script_cycle(floor_key).await,
            Path::RawCommands => self.floor.shedlock_commands_cycle(floor_key).await,
            Path::TryLock => match self.provider.try_lock(config).await? {
                Some(guard) => Ok(guard.unlock().await?),
                None => Err(unexpected("try_lock", None::<()>)),
            },
            Path::TryLockWithToken => match self.provider.try_lock(config).await? {
                Some(guard) => {
                    black_box(guard.fencing_token().await?);
                    Ok(guard.unlock().await?)
                }
                None => Err(unexpected("try_lock", None::<()>)),
            },
            Path::Executor => match self
                .executor
                .execute(config, async { black_box(1) })
                .await?
            {
                Some(_) => Ok(()),
                None => Err(unexpected("execute", None::<()>)),
            },
            Path::Attribute => match serial_job(&self.provider).await? {
                Some(_) => Ok(()),
                None => Err(unexpected("attribute", None::<()>)),
            },
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// One line of the summary table.
struct Row {
    figure: String,
    ours: String,
    floor: String,
    ratio: Option<f64>,
    target: &'static str,
    met: Option<bool>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<56} {:>14} {:>14} {:>7}  {:<16} met",
        "figure", "shedlock", "floor", "ratio", "target"
    );
    for row in rows {
        println!(
            "{:<56} {:>14} {:>14} {:>7}  {:<16} {}",
            row.figure,
            row.ours,
            row.floor,
            row.ratio.map_or("-".to_owned(), |r| format!("{r:.3}x")),
            row.target,
            match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            }
        );
    }
}

/// Serial cycles, uncontended, each path in turn in blocks so drift hits all alike.
async fn serial(bench: &Bench, cycles: usize, rows: &mut Vec<Row>) -> BenchResult<()> {
    // Small blocks: the machine's speed drifts within seconds, and every path
    // must see the same drift for the ratios to hold.
    const BLOCK: usize = 20;
    let paths = [
        Path::Floor,
        Path::FloorWithChecks,
        Path::RawCommands,
        Path::TryLock,
        Path::TryLockWithToken,
        Path::Executor,
        Path::Attribute,
    ];
    let executor_config = LockConfiguration::new("serial-executor", LEASE, Duration::ZERO)?;
    let try_lock_config = LockConfiguration::new("serial-try-lock", LEASE, Duration::ZERO)?;
    let config_of = |path| match path {
        Path::Executor => &executor_config,
        _ => &try_lock_config,
    };
    let floor_key = "floor:serial";
    for path in paths {
        for _ in 0..500 {
            bench.cycle(path, config_of(path), floor_key).await?;
        }
    }
    let mut samples: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let blocks = cycles.div_ceil(BLOCK);
    for block in 0..blocks {
        // Rotate the order too, so no path always follows the same one.
        for i in 0..paths.len() {
            let index = (i + block) % paths.len();
            let path = paths[index];
            let latencies = samples.entry(index).or_default();
            for _ in 0..BLOCK {
                let start = Instant::now();
                bench.cycle(path, config_of(path), floor_key).await?;
                latencies.push(start.elapsed());
            }
        }
    }
    println!(
        "serial cycle, uncontended ({} cycles per path)",
        blocks * BLOCK
    );
    let mut floor = (Duration::ZERO, Duration::ZERO);
    for (index, latencies) in &mut samples {
        latencies.sort();
        let path = paths[*index];
        let (p50, p99) = (percentile(latencies, 0.5), percentile(latencies, 0.99));
        println!(
            "  {:<46} p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs",
            path.label(),
            us(p50),
            us(p99),
            us(latencies.iter().sum::<Duration>() / latencies.len() as u32),
        );
        if path == Path::Floor {
            floor = (p50, p99);
            continue;
        }
        let ratio = us(p50) / us(floor.0);
        if matches!(
            path,
            Path::FloorWithChecks | Path::RawCommands | Path::TryLockWithToken
        ) {
            rows.push(Row {
                figure: format!("serial p50: {}", path.label()),
                ours: format!("{:.1} µs", us(p50)),
                floor: format!("{:.1} µs", us(floor.0)),
                ratio: Some(ratio),
                target: "(breakdown)",
                met: None,
            });
            continue;
        }
        rows.push(Row {
            figure: format!("serial p50: {}", path.label()),
            ours: format!("{:.1} µs", us(p50)),
            floor: format!("{:.1} µs", us(floor.0)),
            ratio: Some(ratio),
            target: "<= 1.05x",
            met: Some(ratio <= 1.05),
        });
        rows.push(Row {
            figure: format!("serial p99: {}", path.label()),
            ours: format!("{:.1} µs", us(p99)),
            floor: format!("{:.1} µs", us(floor.1)),
            ratio: Some(us(p99) / us(floor.1)),
            target: "-",
            met: None,
        });
    }
    Ok(())
}

/// `TASKS` tasks, each cycling its own name `per_task` times; cycles per second.
async fn throughput(bench: &Bench, path: Path, per_task: usize) -> BenchResult<f64> {
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for task in 0..TASKS {
        let bench = bench.clone();
        tasks.spawn(async move {
            let config =
                LockConfiguration::new(format!("concurrent-{task}"), LEASE, Duration::ZERO)?;
            let floor_key = format!("floor:concurrent-{task}");
            for _ in 0..per_task {
                bench.cycle(path, &config, &floor_key).await?;
            }
            BenchResult::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((TASKS * per_task) as f64 / start.elapsed().as_secs_f64())
}

async fn concurrent(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
    // Many short rounds, each path in every round: the machine's speed
    // drifts, and a ratio is only as good as the rounds it compares.
    const ROUNDS: usize = 15;
    const PER_TASK: usize = 100;
    let paths = [
        Path::Floor,
        Path::FloorWithChecks,
        Path::FloorOneScript,
        Path::RawCommands,
        Path::TryLock,
        Path::Executor,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for path in paths {
        throughput(bench, path, 20).await?; // warm-up
    }
    for _ in 0..ROUNDS {
        for (i, path) in paths.iter().enumerate() {
            rates[i].push(throughput(bench, *path, PER_TASK).await?);
        }
    }
    println!(
        "{TASKS} tasks on distinct names, one connection ({} cycles per round, median of {ROUNDS} rounds)",
        TASKS * PER_TASK
    );
    for (i, path) in paths.iter().enumerate() {
        let rounds = rates[i]
            .iter()
            .map(|r| format!("{:.0}k", r / 1e3))
            .collect::<Vec<_>>()
            .join(" ");
        let rate = median(&mut rates[i].clone());
        println!(
            "  {:<46} {:>8.0} cycles/s   rounds: {rounds}",
            path.label(),
            rate
        );
        if *path == Path::Floor {
            continue;
        }
        // Other processes share the machine: each round's ratio compares
        // runs made seconds apart, and the median of those resists drift.
        let mut ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(r, f)| r / f).collect();
        let ratio = median(&mut ratios);
        let breakdown = matches!(
            path,
            Path::FloorWithChecks | Path::FloorOneScript | Path::RawCommands
        );
        rows.push(Row {
            figure: format!("{TASKS} tasks: {}", path.label()),
            ours: format!("{:.0}k/s", rate / 1e3),
            floor: format!("{:.0}k/s", median(&mut rates[0].clone()) / 1e3),
            ratio: Some(ratio),
            target: if breakdown { "(breakdown)" } else { ">= 0.85x" },
            met: (!breakdown).then_some(ratio >= 0.85),
        });
    }
    Ok(())
}

/// `TENANTS` names, each run once, by `TASKS` workers taking the next id.
async fn tenants_round(bench: &Bench, floor: bool, offset: usize) -> BenchResult<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..TASKS {
        let (bench, next) = (bench.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TENANTS {
                    return BenchResult::Ok(());
                }
                let id = offset + i;
                if floor {
                    bench.floor.cycle(&format!("floor:tenant-{id}")).await?;
                } else if tenant_job(&bench.provider, id).await?.is_none() {
                    return Err(unexpected("tenant job", id));
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(start.elapsed())
}

async fn tenants(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
    const ROUNDS: usize = 3;
    let (mut ours, mut floor, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let offset = round * TENANTS;
        floor.push(tenants_round(bench, true, offset).await?.as_secs_f64());
        ours.push(tenants_round(bench, false, offset).await?.as_secs_f64());
        ratios.push(ours[round] / floor[round]);
    }
    let (ours, floor, ratio) = (median(&mut ours), median(&mut floor), median(&mut ratios));
    println!(
        "{TENANTS} distinct names (\"tenant-{{id}}\"), each run once, {TASKS} at a time (median of {ROUNDS})"
    );
    println!("  {:<46} {:>8.1} ms", Path::Floor.label(), floor * 1e3);
    println!(
        "  {:<46} {:>8.1} ms",
        "#[scheduler_lock(name = \"tenant-{id}\")]",
        ours * 1e3
    );
    rows.push(Row {
        figure: format!("{TENANTS} tenant names, {TASKS} at a time: total"),
        ours: format!("{:.1} ms", ours * 1e3),
        floor: format!("{:.1} ms", floor * 1e3),
        ratio: Some(ratio),
        target: "-",
        met: None,
    });
    Ok(())
}

/// `CONTENDERS` callers on one name at once; the time until all have their
/// answer, and the number of winners (which must be exactly one).
async fn contention_round(
    bench: &Bench,
    floor: bool,
    config: &LockConfiguration,
) -> BenchResult<(Duration, usize)> {
    let floor_key = "floor:contended";
    let mut callers = Vec::with_capacity(CONTENDERS);
    let start = Instant::now();
    for _ in 0..CONTENDERS {
        let (bench, config) = (bench.clone(), config.clone());
        callers.push(tokio::spawn(async move {
            if floor {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    bench.floor.acquire(floor_key).await?.map(Err),
                )
            } else {
                Ok(bench.provider.try_lock(&config).await?.map(Ok))
            }
        }));
    }
    let mut answers = Vec::with_capacity(CONTENDERS);
    for caller in callers {
        answers.push(caller.await??);
    }
    let elapsed = start.elapsed();
    let winners: Vec<_> = answers.into_iter().flatten().collect();
    let count = winners.len();
    for winner in winners {
        match winner {
            Ok(guard) => guard.unlock().await?,
            Err(value) => bench.floor.release(floor_key, value).await?,
        }
    }
    Ok((elapsed, count))
}

async fn contention(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<bool> {
    const ROUNDS: usize = 200;
    let config = LockConfiguration::new("contended", LEASE, Duration::ZERO)?;
    let mut correct = true;
    let mut times = [Vec::new(), Vec::new()];
    let mut wrong = [0, 0];
    for round in 0..ROUNDS + 20 {
        for (i, floor) in [true, false].into_iter().enumerate() {
            let (elapsed, winners) = contention_round(bench, floor, &config).await?;
            if winners != 1 {
                wrong[i] += 1;
                correct = false;
                eprintln!(
                    "contention round {round} ({}): {winners} winners",
                    if floor { "floor" } else { "shedlock" }
                );
            }
            if round >= 20 {
                times[i].push(elapsed);
            }
        }
    }
    println!(
        "{CONTENDERS} callers on one name at once ({ROUNDS} rounds): time until all have their answer"
    );
    let mut p50s = [Duration::ZERO; 2];
    for (i, label) in [Path::Floor.label(), Path::TryLock.label()]
        .into_iter()
        .enumerate()
    {
        times[i].sort();
        p50s[i] = percentile(&times[i], 0.5);
        println!(
            "  {label:<46} p50 {:>8.1} µs   p99 {:>8.1} µs   rounds with exactly one winner: {}/{}",
            us(p50s[i]),
            us(percentile(&times[i], 0.99)),
            ROUNDS + 20 - wrong[i],
            ROUNDS + 20,
        );
    }
    rows.push(Row {
        figure: format!("{CONTENDERS} callers on one name: all answered, p50"),
        ours: format!("{:.1} µs", us(p50s[1])),
        floor: format!("{:.1} µs", us(p50s[0])),
        ratio: Some(us(p50s[1]) / us(p50s[0])),
        target: "1 winner",
        met: Some(wrong[1] == 0),
    });
    Ok(correct)
}

/// Nanoseconds per call of the in-memory attribute and of the bare function.
async fn in_memory(rows: &mut Vec<Row>) -> BenchResult<()> {
    // `MEMORY_CALLS=N`: fewer calls, for a run under callgrind.
    let calls: u64 = std::env::var("MEMORY_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let memory = InMemoryLockProvider::new();
    let (mut annotated, mut bare) = (Vec::new(), Vec::new());
    for round in 0..11 {
        let start = Instant::now();
        for x in 0..calls {
            black_box(bare_memory_job(&memory, black_box(x)).await);
        }
        let bare_ns = start.elapsed().as_nanos() as f64 / calls as f64;
        let start = Instant::now();
        for x in 0..calls {
            if annotated_memory_job(&memory, black_box(x)).await?.is_none() {
                return Err(unexpected("in-memory job", x));
            }
        }
        let annotated_ns = start.elapsed().as_nanos() as f64 / calls as f64;
        if round > 0 {
            bare.push(bare_ns);
            annotated.push(annotated_ns);
        }
    }
    let (annotated, bare) = (median(&mut annotated), median(&mut bare));
    let overhead = annotated - bare;
    println!("in-memory provider ({calls} calls per round, median of 10 rounds)");
    println!("  bare call                                      {bare:>8.1} ns");
    println!("  #[scheduler_lock(provider = memory)] call       {annotated:>8.1} ns");
    println!("  overhead per call                              {overhead:>8.1} ns");
    rows.push(Row {
        figure: "in-memory: attribute overhead per call".into(),
        ours: format!("{overhead:.0} ns"),
        floor: format!("{bare:.1} ns"),
        ratio: None,
        target: "< 1000 ns",
        met: Some(overhead < 1000.0),
    });
    Ok(())
}

/// Per command: (calls, µs spent) since the last `CONFIG RESETSTAT`.
type CommandStats = BTreeMap<String, (u64, u64)>;

/// What the server counted since the last `CONFIG RESETSTAT`.
struct ServerCounts {
    calls: CommandStats,
    /// Reads of client requests (`total_reads_processed`): one per round trip
    /// of a serial client, whose request arrives in one piece; this `INFO`
    /// itself is not included.
    reads: u64,
}

/// The server's counts from `INFO stats` and `INFO commandstats`.
async fn command_stats(admin: &mut MultiplexedConnection) -> BenchResult<ServerCounts> {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .arg("commandstats")
        .query_async(admin)
        .await?;
    let reads = info
        .lines()
        .find_map(|line| line.strip_prefix("total_reads_processed:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or("INFO stats has no total_reads_processed (Redis 6 or later needed)")?
        .saturating_sub(1);
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        let Some((command, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|line| line.split_once(':'))
        else {
            continue;
        };
        // The bench's own INFO and CONFIG RESETSTAT are not part of a run.
        if command == "info" || command.starts_with("config") {
            continue;
        }
        let field = |name: &str| {
            stats
                .split(',')
                .find_map(|field| field.strip_prefix(name))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        calls.insert(command.to_owned(), (field("calls="), field("usec=")));
    }
    Ok(ServerCounts { calls, reads })
}

async fn reset_stats(admin: &mut MultiplexedConnection) -> BenchResult<()> {
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(admin)
        .await?;
    Ok(())
}

/// Whether `command` came from the client itself rather than from inside a
/// script (commandstats counts both, and a script's time includes its
/// commands'). On the measured paths (scripts loaded, counters seeded) only
/// clients send `SET` and `EXISTS`; the release and extension scripts run
/// `GET`, `DEL`, `PTTL`, `PEXPIRE` and `PUBLISH`.
fn sent_by_client(command: &str) -> bool {
    matches!(
        command,
        "evalsha" | "eval" | "script|load" | "set" | "incr" | "exists"
    )
}

/// Server-side counts per run of a plain run, a run with `lock_at_least_for`
/// and one with keep-alive, next to the floor's; `Ok(false)` unless a plain
/// run takes exactly 2 round trips.
async fn commands_per_run(bench: &Bench, admin: &mut MultiplexedConnection) -> BenchResult<bool> {
    const RUNS: usize = 100;
    const KEEP_ALIVE_RUNS: usize = 10;
    // Load every script first, so no run pays a NOSCRIPT reply and a load,
    // and seed each name's fencing counter: a name's first acquisition in a
    // week takes one more round trip (see the 10,000-name figure).
    let warm = LockConfiguration::new("count-warm", LEASE, Duration::ZERO)?;
    if let Some(mut guard) = bench.provider.try_lock(&warm).await? {
        guard.extend(LEASE, Duration::ZERO).await?;
        guard.unlock().await?;
    }
    let plain = LockConfiguration::new("count-plain", LEASE, Duration::ZERO)?;
    let least = |run: usize, least: Duration| {
        LockConfiguration::new(format!("count-least-{run}"), LEASE, least)
    };
    let keep_alive = |run: usize| {
        LockConfiguration::new(
            format!("count-keep-alive-{run}"),
            Duration::from_millis(300),
            Duration::ZERO,
        )
    };
    bench.executor.execute(&plain, async {}).await?;
    for run in 0..RUNS {
        bench
            .executor
            .execute(least(run, Duration::ZERO)?, async {})
            .await?;
        bench.executor.execute(keep_alive(run)?, async {}).await?;
    }
    bench.floor.cycle("floor:count").await?;

    let mut scenarios: Vec<(&str, usize, ServerCounts)> = Vec::new();

    reset_stats(admin).await?;
    for _ in 0..RUNS {
        bench.floor.cycle("floor:count").await?;
    }
    scenarios.push((
        "floor: SET NX PX + compare-and-delete",
        RUNS,
        command_stats(admin).await?,
    ));

    reset_stats(admin).await?;
    for _ in 0..RUNS {
        bench.executor.execute(&plain, async {}).await?;
    }
    scenarios.push(("plain run", RUNS, command_stats(admin).await?));

    reset_stats(admin).await?;
    for run in 0..RUNS {
        // Each name stays held for lock_at_least_for after its run, so each run has its own.
        let config = least(run, Duration::from_secs(10))?;
        bench.executor.execute(&config, async {}).await?;
    }
    scenarios.push((
        "run with lock_at_least_for = 10s",
        RUNS,
        command_stats(admin).await?,
    ));

    // lock_at_most_for 300 ms: keep-alive extends every 100 ms; the body's
    // 160 ms cover exactly one extension. One run at a time, so every
    // request reaches the server on its own and is counted as a read.
    reset_stats(admin).await?;
    for run in 0..KEEP_ALIVE_RUNS {
        let options = ExecutionOptions::new().keep_alive(true);
        bench
            .executor
            .execute_with(
                keep_alive(run)?,
                options,
                tokio::time::sleep(Duration::from_millis(160)),
            )
            .await?;
    }
    scenarios.push((
        "run with keep_alive (one extension)",
        KEEP_ALIVE_RUNS,
        command_stats(admin).await?,
    ));

    println!("Redis commands per run, counted by the server (INFO stats, INFO commandstats)");
    let mut plain_round_trips = 0.0;
    for (label, runs, counts) in &scenarios {
        let per_run = |count: u64| count as f64 / *runs as f64;
        let from_client = || {
            counts
                .calls
                .iter()
                .filter(|(command, _)| sent_by_client(command))
        };
        let sent: u64 = from_client().map(|(_, (count, _))| count).sum();
        let server_us: u64 = from_client().map(|(_, (_, usec))| usec).sum();
        let server_side: u64 = counts.calls.values().map(|(count, _)| count).sum();
        let detail = counts
            .calls
            .iter()
            .map(|(command, (count, _))| format!("{command} {}", per_run(*count)))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {label:<38} round trips {:>4.2}   sent {:>4.2}   run by the server {:>5.2}   server time {:>5.1} µs   ({detail})",
            per_run(counts.reads),
            per_run(sent),
            per_run(server_side),
            per_run(server_us),
        );
        if *label == "plain run" {
            plain_round_trips = per_run(counts.reads);
        }
    }
    Ok(plain_round_trips == 2.0)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("lock_cycle: a correctness check failed (see above)");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("lock_cycle: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> BenchResult<bool> {
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let server = RedisServer::start();
    // The provider and the floor get the same client settings: the provider's defaults.
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(DEFAULT_CONNECTION_TIMEOUT));
    let client = Client::open(server.url())?;
    let provider = RedisLockProvider::new_with_config(client.clone(), config.clone()).await?;
    let floor = Floor {
        connection: client
            .get_multiplexed_async_connection_with_config(&config)
            .await?,
        release: Arc::new(Script::new(FLOOR_RELEASE)),
        shedlock_release: Arc::new(Script::new(concat!(
            include_str!("../shedlock-redis/src/scripts/lease_value.lua"),
            include_str!("../shedlock-redis/src/scripts/release.lua")
        ))),
        scripted_acquire: Arc::new(Script::new(
            "local held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET') \
             return {held or '', redis.call('EXISTS', KEYS[2], KEYS[3])}",
        )),
    };
    let mut admin = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let bench = Bench {
        executor: LockingTaskExecutor::new(provider.clone()),
        provider,
        floor,
    };
    let mut rows = Vec::new();

    // `ONLY=serial,concurrent` runs some scenarios (for profiling); all by default.
    let only = std::env::var("ONLY").unwrap_or_default();
    let runs = |scenario: &str| only.is_empty() || only.split(',').any(|s| s == scenario);
    let mut correct = true;
    if runs("serial") {
        serial(&bench, cycles, &mut rows).await?;
    }
    if runs("concurrent") {
        concurrent(&bench, &mut rows).await?;
    }
    if runs("tenants") {
        tenants(&bench, &mut rows).await?;
    }
    if runs("contention") {
        correct &= contention(&bench, &mut rows).await?;
    }
    if runs("memory") {
        in_memory(&mut rows).await?;
    }
    if runs("commands") {
        let two_round_trips = commands_per_run(&bench, &mut admin).await?;
        rows.push(Row {
            figure: "round trips per plain run (server's read count)".into(),
            ours: if two_round_trips {
                "2".into()
            } else {
                "not 2".into()
            },
            floor: "2".into(),
            ratio: None,
            target: "2",
            met: Some(two_round_trips),
        });
        correct &= two_round_trips;
    }
    print_table(&rows);
    Ok(correct)
}
