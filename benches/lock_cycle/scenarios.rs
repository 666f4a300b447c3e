//! The scenarios: serial cycles, 256 tasks, 10,000 tenant names, 64 contenders, the in-memory overhead.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shedlock::{InMemoryLockProvider, LockConfiguration, LockProvider};

use crate::paths::{Bench, Path, unexpected};
use crate::report::{Row, median, percentile, us};
use crate::{
    BenchResult, CONTENDERS, LEASE, TASKS, TENANTS, annotated_memory_job, bare_memory_job,
    tenant_job,
};

/// Serial cycles, uncontended, each path in turn in blocks so drift hits all alike.
pub(crate) async fn serial(bench: &Bench, cycles: usize, rows: &mut Vec<Row>) -> BenchResult<()> {
    // Small blocks: the machine's speed drifts within seconds, and every path
    // must see the same drift for the ratios to hold.
    const BLOCK: usize = 20;
    let paths = [
        Path::Floor,
        Path::FloorWithChecks,
        Path::Bound,
        Path::TryLock,
        Path::TryLockWithToken,
        Path::TryLockForTick,
        Path::Executor,
        Path::ExecutorWithHistory,
        Path::Attribute,
    ];
    let executor_config = LockConfiguration::new("serial-executor", LEASE, Duration::ZERO)?;
    let try_lock_config = LockConfiguration::new("serial-try-lock", LEASE, Duration::ZERO)?;
    let config_of = |path| match path {
        Path::Executor | Path::ExecutorWithHistory => &executor_config,
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
            Path::FloorWithChecks
                | Path::Bound
                | Path::TryLockWithToken
                | Path::TryLockForTick
                | Path::ExecutorWithHistory
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
            target: "<= 1.03x",
            met: Some(ratio <= 1.03),
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

/// A bench whose paths each run one lock cycle: what [`throughput`] runs on
/// many tasks at once.
pub(crate) trait Cycles: Clone + Send + Sync + 'static {
    type Path: Copy + Send + 'static;

    /// One acquire + release of `config` (or of the floor's `floor_key`) through `path`.
    fn cycle(
        &self,
        path: Self::Path,
        config: &LockConfiguration,
        floor_key: &str,
    ) -> impl Future<Output = BenchResult<()>> + Send;
}

/// `tasks` tasks at once, task `i` cycling its own names `names(i)` (the
/// lock's, the floor's) `per_task` times through `path`; cycles per second.
pub(crate) async fn throughput<B: Cycles>(
    bench: &B,
    path: B::Path,
    (tasks, per_task): (usize, usize),
    names: fn(usize) -> (String, String),
) -> BenchResult<f64> {
    let mut running = tokio::task::JoinSet::new();
    let start = Instant::now();
    for task in 0..tasks {
        let bench = bench.clone();
        running.spawn(async move {
            let (name, floor_key) = names(task);
            let config = LockConfiguration::new(name, LEASE, Duration::ZERO)?;
            for _ in 0..per_task {
                bench.cycle(path, &config, &floor_key).await?;
            }
            BenchResult::Ok(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok((tasks * per_task) as f64 / start.elapsed().as_secs_f64())
}

/// Task `task`'s names in [`concurrent`]: its lock's and its floor key.
fn concurrent_names(task: usize) -> (String, String) {
    (
        format!("concurrent-{task}"),
        format!("floor:concurrent-{task}"),
    )
}

pub(crate) async fn concurrent(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
    // Many short rounds, each path in every round: the machine's speed
    // drifts, and a ratio is only as good as the rounds it compares.
    const ROUNDS: usize = 15;
    const PER_TASK: usize = 100;
    let paths = [
        Path::Floor,
        Path::FloorWithChecks,
        Path::FloorOneScript,
        Path::Bound,
        Path::TryLock,
        Path::Executor,
        Path::ExecutorWithHistory,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for path in paths {
        throughput(bench, path, (TASKS, 20), concurrent_names).await?; // warm-up
    }
    for _ in 0..ROUNDS {
        for (i, path) in paths.iter().enumerate() {
            rates[i].push(throughput(bench, *path, (TASKS, PER_TASK), concurrent_names).await?);
        }
    }
    println!(
        "{TASKS} tasks on distinct names, one connection ({} cycles per round, median of {ROUNDS} rounds)",
        TASKS * PER_TASK
    );
    rate_rows(&format!("{TASKS} tasks"), &paths, &rates, rows);
    Ok(())
}

/// Prints each path's rates (the first path's are the floor's) with their
/// ratios to the floor's, and adds a row per path but the floor: the
/// median of its per-run ratios (other processes share the machine: each
/// run's ratio compares runs made seconds apart, and the median of those
/// resists drift). The floor's breakdowns and the bound are shown, not
/// held to the target.
fn rate_rows(figure: &str, paths: &[Path], rates: &[Vec<f64>], rows: &mut Vec<Row>) {
    let shown = |values: &[f64], show: fn(f64) -> String| {
        values
            .iter()
            .map(|v| show(*v))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let floor = median(&mut rates[0].clone());
    for (i, path) in paths.iter().enumerate() {
        let runs = shown(&rates[i], |rate| format!("{:.0}k", rate / 1e3));
        let rate = median(&mut rates[i].clone());
        if i == 0 {
            println!("  {:<46} {rate:>8.0} cycles/s   runs: {runs}", path.label());
            continue;
        }
        let mut ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(r, f)| r / f).collect();
        println!(
            "  {:<46} {rate:>8.0} cycles/s   runs: {runs}   ÷ floor: {}",
            path.label(),
            shown(&ratios, |ratio| format!("{ratio:.3}"))
        );
        let ratio = median(&mut ratios);
        let shown_only = matches!(
            path,
            Path::FloorWithChecks | Path::FloorOneScript | Path::Bound
        );
        rows.push(Row {
            figure: format!("{figure}: {}", path.label()),
            ours: format!("{:.0}k/s", rate / 1e3),
            floor: format!("{:.0}k/s", floor / 1e3),
            ratio: Some(ratio),
            target: match path {
                Path::Bound => "(bound)",
                _ if shown_only => "(breakdown)",
                _ => ">= 0.85x",
            },
            met: (!shown_only).then_some(ratio >= 0.85),
        });
    }
}

/// `TASKS` loops on distinct names joined in one task (no spawning), each
/// cycling `path` until `run_for` has passed; cycles per second.
async fn joined_rate(bench: &Bench, path: Path, run_for: Duration) -> BenchResult<f64> {
    let start = Instant::now();
    let deadline = start + run_for;
    let loops = (0..TASKS).map(|task| async move {
        let config = LockConfiguration::new(format!("joined-{task}"), LEASE, Duration::ZERO)?;
        let floor_key = format!("floor:joined-{task}");
        let mut cycles = 0_u64;
        while Instant::now() < deadline {
            bench.cycle(path, &config, &floor_key).await?;
            cycles += 1;
        }
        BenchResult::Ok(cycles)
    });
    let mut cycles = 0;
    for done in futures_util::future::join_all(loops).await {
        cycles += done?;
    }
    Ok(cycles as f64 / start.elapsed().as_secs_f64())
}

/// The client-cost issue's shape: `TASKS` loops joined in one task for 3 s,
/// `try_lock` + `unlock` alternating with the floor, three runs each.
pub(crate) async fn joined(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
    const RUN_FOR: Duration = Duration::from_secs(3);
    // `JOINED_RUNS=N`: more runs for a steadier median on a noisy machine.
    let runs: usize = std::env::var("JOINED_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    // `JOINED_ONLY=floor|bound|try_lock`: one side alone for 10 s, to profile it.
    if let Ok(side) = std::env::var("JOINED_ONLY") {
        let path = match side.as_str() {
            "floor" => Path::Floor,
            "bound" => Path::Bound,
            _ => Path::TryLock,
        };
        let rate = joined_rate(bench, path, Duration::from_secs(10)).await?;
        println!(
            "{TASKS} loops joined, {} alone: {rate:.0} cycles/s",
            path.label()
        );
        return Ok(());
    }
    // The floor, the bound (the raw client sending shedlock's exact
    // commands) and the provider, in turn, three runs each.
    let paths = [Path::Floor, Path::Bound, Path::TryLock];
    for path in paths {
        joined_rate(bench, path, Duration::from_millis(500)).await?; // warm-up
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..runs {
        for (i, path) in paths.iter().enumerate() {
            rates[i].push(joined_rate(bench, *path, RUN_FOR).await?);
        }
    }
    println!("{TASKS} loops joined in one task, {RUN_FOR:?} a run, alternating with the floor");
    rate_rows(&format!("{TASKS} joined"), &paths, &rates, rows);
    Ok(())
}

/// `TENANTS` names, each run once, by `TASKS` workers taking the next id.
pub(crate) async fn tenants_round(
    bench: &Bench,
    floor: bool,
    offset: usize,
) -> BenchResult<Duration> {
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

pub(crate) async fn tenants(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
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
pub(crate) async fn contention_round(
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

/// The time until 64 callers on one name all have their answer. How many
/// won is printed; that exactly one does is a test
/// (`shedlock-redis/tests/lock_cycle.rs`).
pub(crate) async fn contention(bench: &Bench, rows: &mut Vec<Row>) -> BenchResult<()> {
    const ROUNDS: usize = 200;
    let config = LockConfiguration::new("contended", LEASE, Duration::ZERO)?;
    let mut times = [Vec::new(), Vec::new()];
    let mut wrong = [0, 0];
    for round in 0..ROUNDS + 20 {
        for (i, floor) in [true, false].into_iter().enumerate() {
            let (elapsed, winners) = contention_round(bench, floor, &config).await?;
            if winners != 1 {
                wrong[i] += 1;
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
        target: "-",
        met: None,
    });
    Ok(())
}

/// Nanoseconds per call of the in-memory attribute and of the bare function.
pub(crate) async fn in_memory(rows: &mut Vec<Row>) -> BenchResult<()> {
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
