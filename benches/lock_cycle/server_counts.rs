//! The Redis commands of a run, counted by the server (`INFO stats`, `INFO commandstats`).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shedlock::{ExecutionOptions, LockConfiguration, LockProvider};

use crate::paths::Bench;
use crate::report::Row;
use crate::{BenchResult, LEASE};

/// Per command: (calls, µs spent) since the last `CONFIG RESETSTAT`.
pub(crate) type CommandStats = BTreeMap<String, (u64, u64)>;

/// What the server counted since the last `CONFIG RESETSTAT`.
pub(crate) struct ServerCounts {
    pub(crate) calls: CommandStats,
    /// Reads of client requests (`total_reads_processed`): one per round trip
    /// of a serial client, whose request arrives in one piece; this `INFO`
    /// itself is not included.
    pub(crate) reads: u64,
}

/// The server's counts from `INFO stats` and `INFO commandstats`.
pub(crate) async fn command_stats(admin: &mut MultiplexedConnection) -> BenchResult<ServerCounts> {
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

pub(crate) async fn reset_stats(admin: &mut MultiplexedConnection) -> BenchResult<()> {
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
pub(crate) fn sent_by_client(command: &str) -> bool {
    matches!(
        command,
        "evalsha" | "eval" | "script|load" | "set" | "incr" | "exists"
    )
}

/// Server-side counts per run of a plain run, a run with `lock_at_least_for`
/// and one with keep-alive, next to the floor's. That a plain run takes two
/// round trips is a test (`shedlock-redis/tests/lock_cycle.rs`).
pub(crate) async fn commands_per_run(
    bench: &Bench,
    admin: &mut MultiplexedConnection,
    rows: &mut Vec<Row>,
) -> BenchResult<()> {
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

    /// What each counted run does.
    #[derive(Clone, Copy)]
    enum Counted {
        Floor,
        Plain,
        /// Each name stays held for lock_at_least_for after its run, so each run has its own.
        AtLeast,
        /// lock_at_most_for 300 ms: keep-alive extends every 100 ms; the body's
        /// 160 ms cover exactly one extension. One run at a time, so every
        /// request reaches the server on its own and is counted as a read.
        KeepAlive,
    }
    let mut scenarios: Vec<(&str, usize, ServerCounts)> = Vec::new();
    for (label, runs, counted) in [
        (
            "floor: SET NX PX + compare-and-delete",
            RUNS,
            Counted::Floor,
        ),
        ("plain run", RUNS, Counted::Plain),
        ("run with lock_at_least_for = 10s", RUNS, Counted::AtLeast),
        (
            "run with keep_alive (one extension)",
            KEEP_ALIVE_RUNS,
            Counted::KeepAlive,
        ),
    ] {
        reset_stats(admin).await?;
        for run in 0..runs {
            match counted {
                Counted::Floor => bench.floor.cycle("floor:count").await?,
                Counted::Plain => {
                    bench.executor.execute(&plain, async {}).await?;
                }
                Counted::AtLeast => {
                    let config = least(run, Duration::from_secs(10))?;
                    bench.executor.execute(&config, async {}).await?;
                }
                Counted::KeepAlive => {
                    let options = ExecutionOptions::new().keep_alive(true);
                    let body = tokio::time::sleep(Duration::from_millis(160));
                    let config = keep_alive(run)?;
                    bench.executor.execute_with(config, options, body).await?;
                }
            }
        }
        scenarios.push((label, runs, command_stats(admin).await?));
    }

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
    rows.push(Row {
        figure: "round trips per plain run (server's read count)".into(),
        ours: format!("{plain_round_trips:.2}"),
        floor: "2".into(),
        ratio: None,
        target: "2",
        met: None,
    });
    Ok(())
}
