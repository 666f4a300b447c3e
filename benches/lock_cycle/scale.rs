//! How a cycle's cost grows with load: cycles/s and latency percentiles with
//! 1 to 4,096 spawned tasks, each cycling a name of its own, in one client
//! process and in four against the same server (`ONLY=scale` for Redis,
//! `ONLY=sql_scale` for PostgreSQL at 1, 16 and 64 tasks).
//!
//! The other processes are this bench binary again, told by
//! [`CHILD_ENV`] what to run and when to start, so every process cycles the
//! same two seconds; each prints its cycle count and latencies on one line,
//! which the first process merges.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shedlock::LockConfiguration;

use crate::report::{Row, percentile, us};
use crate::scenarios::Cycles;
use crate::{BenchResult, LEASE};

/// `store side tasks run_ms start_ms process`: a child process's one run
/// (`process`: its number, 1 to 3, which keeps its names apart).
pub(crate) const CHILD_ENV: &str = "LOCK_CYCLE_SCALE_CHILD";

/// How long each run lasts.
const RUN_FOR: Duration = Duration::from_secs(2);

/// The line a child prints its result on: `<cycles> <latency ns>...`.
const RESULT_MARK: &str = "scale-result:";

/// One side of a run: the floor, the bound (the raw client sending the
/// provider's commands, where the bench has one) or the provider, named as
/// a child is told.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Floor,
    Bound,
    Provider,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Floor => "floor",
            Side::Bound => "bound",
            Side::Provider => "provider",
        }
    }

    fn parse(name: &str) -> BenchResult<Side> {
        match name {
            "floor" => Ok(Side::Floor),
            "bound" => Ok(Side::Bound),
            "provider" => Ok(Side::Provider),
            other => Err(format!("{CHILD_ENV}: unknown side {other:?}").into()),
        }
    }
}

/// A store the scale runs measure: its cycles, and how a child process
/// makes the same bench.
pub(crate) trait Scaled: Cycles {
    /// The store's name in [`CHILD_ENV`] and in the printed figures.
    const STORE: &'static str;
    /// The bench path of each side it has.
    fn path(&self, side: Side) -> Option<Self::Path>;
    /// Task `task`'s lock name and floor key.
    fn names(task: usize) -> (String, String);
    /// What else a child must be told to make the same bench (the Redis
    /// server's URL, the SQL table).
    fn child_env(&self) -> Vec<(&'static str, String)>;
}

/// What one run measured, over every process.
struct Measured {
    cycles: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64()
    }

    fn merge(&mut self, other: Measured) {
        self.cycles += other.cycles;
        self.latencies.extend(other.latencies);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// Names per process: process `p`'s task `t` cycles names number
/// `p * NAMES_PER_PROCESS + t`.
const NAMES_PER_PROCESS: usize = 100_000;

/// `tasks` spawned tasks cycling their own names through `side` from
/// `start` until `run_for` later, in process number `process`.
async fn run<B: Scaled>(
    bench: &B,
    side: Side,
    (tasks, process): (usize, usize),
    start: SystemTime,
    run_for: Duration,
) -> BenchResult<Measured> {
    let path = bench
        .path(side)
        .ok_or_else(|| format!("{}: no {} path", B::STORE, side.name()))?;
    let wait = start.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait).await;
    let began = Instant::now();
    let deadline = began + run_for;
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let bench = bench.clone();
        running.spawn(async move {
            let (name, floor_key) = B::names(process * NAMES_PER_PROCESS + task);
            let config = LockConfiguration::new(name, LEASE, Duration::ZERO)?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                bench.cycle(path, &config, &floor_key).await?;
                latencies.push(start.elapsed());
            }
            BenchResult::Ok(latencies)
        });
    }
    let mut measured = Measured {
        cycles: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = running.join_next().await {
        let latencies = done??;
        measured.cycles += latencies.len() as u64;
        measured.latencies.extend(latencies);
    }
    measured.elapsed = began.elapsed();
    Ok(measured)
}

/// One run in `processes` processes (this one and `processes - 1`
/// children, all starting together).
async fn run_in<B: Scaled>(
    bench: &B,
    side: Side,
    tasks: usize,
    processes: usize,
) -> BenchResult<Measured> {
    // Time for the children to start and connect.
    let start = SystemTime::now() + Duration::from_millis(if processes > 1 { 3000 } else { 50 });
    let start_ms = start.duration_since(UNIX_EPOCH)?.as_millis();
    let mut children = Vec::new();
    for process in 1..processes {
        let mut child = tokio::process::Command::new(std::env::current_exe()?);
        child
            .arg("--bench")
            .env(
                CHILD_ENV,
                format!(
                    "{} {} {tasks} {} {start_ms} {process}",
                    B::STORE,
                    side.name(),
                    RUN_FOR.as_millis(),
                ),
            )
            .envs(bench.child_env())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        children.push(child.spawn()?);
    }
    let mut measured = run(bench, side, (tasks, 0), start, RUN_FOR).await?;
    for child in children {
        let output = child.wait_with_output().await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix(RESULT_MARK))
            .ok_or_else(|| format!("a scale child printed no result ({})", output.status))?;
        measured.merge(parse_result(line)?);
    }
    Ok(measured)
}

fn parse_result(line: &str) -> BenchResult<Measured> {
    let mut numbers = line.split_whitespace().map(str::parse::<u64>);
    let cycles = numbers.next().ok_or("an empty scale result")??;
    let elapsed = Duration::from_nanos(numbers.next().ok_or("a scale result without time")??);
    let latencies = numbers
        .map(|ns| ns.map(Duration::from_nanos))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Measured {
        cycles,
        latencies,
        elapsed,
    })
}

/// A child process's run of `bench` (made as [`Scaled::child_env`] told),
/// as `spec` ([`CHILD_ENV`]) describes it; its result printed.
pub(crate) async fn child<B: Scaled>(spec: &str, bench: &B) -> BenchResult<()> {
    let spec: Vec<&str> = spec.split_whitespace().collect();
    let [_store, side, tasks, run_ms, start_ms, process] = spec[..] else {
        return Err(
            format!("{CHILD_ENV}: expected 'store side tasks run_ms start_ms process'").into(),
        );
    };
    let start = UNIX_EPOCH + Duration::from_millis(start_ms.parse()?);
    let run_for = Duration::from_millis(run_ms.parse()?);
    let (side, tasks, process) = (Side::parse(side)?, tasks.parse()?, process.parse()?);
    let measured = run(bench, side, (tasks, process), start, run_for).await?;
    let mut line = format!(
        "{RESULT_MARK}{} {}",
        measured.cycles,
        measured.elapsed.as_nanos()
    );
    for latency in &measured.latencies {
        line.push(' ');
        line.push_str(&latency.as_nanos().to_string());
    }
    println!("{line}");
    Ok(())
}

/// The numbers in the comma-separated `var`, else `default`.
pub(crate) fn counts(var: &str, default: &[usize]) -> BenchResult<Vec<usize>> {
    match std::env::var(var) {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .map_err(|err| format!("{var}: {err}").into())
            })
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}

/// Every task count in `task_counts` with each number of processes in
/// `process_counts`, the floor then the provider; a row per provider run.
pub(crate) async fn scale<B: Scaled>(
    bench: &B,
    task_counts: &[usize],
    process_counts: &[usize],
    rows: &mut Vec<Row>,
) -> BenchResult<()> {
    println!(
        "{}: spawned tasks on names of their own, {RUN_FOR:?} a run, the floor then the provider",
        B::STORE
    );
    for &processes in process_counts {
        for &tasks in task_counts {
            let mut sides = Vec::new();
            for side in [Side::Floor, Side::Bound, Side::Provider] {
                if bench.path(side).is_none() {
                    continue;
                }
                let mut measured = run_in(bench, side, tasks, processes).await?;
                measured.latencies.sort();
                let (p50, p99) = (
                    percentile(&measured.latencies, 0.5),
                    percentile(&measured.latencies, 0.99),
                );
                println!(
                    "  {processes} process(es) x {tasks:>4} tasks, {:<8} {:>8.0} cycles/s   p50 {:>8.1} µs   p99 {:>9.1} µs",
                    side.name(),
                    measured.rate(),
                    us(p50),
                    us(p99)
                );
                sides.push((side, measured.rate(), p99));
            }
            let Some(&(_, floor, floor_p99)) = sides.first() else {
                continue;
            };
            for &(side, rate, p99) in &sides[1..] {
                rows.push(Row {
                    figure: format!("{}: {processes} x {tasks} tasks, {}", B::STORE, side.name()),
                    ours: format!("{:.0}k ({:.0} µs)", rate / 1e3, us(p99)),
                    floor: format!("{:.0}k ({:.0} µs)", floor / 1e3, us(floor_p99)),
                    ratio: Some(rate / floor),
                    target: "(cycles/s, p99)",
                    met: None,
                });
            }
        }
    }
    Ok(())
}
