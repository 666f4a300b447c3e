//! Torture: 8 worker processes on 2 lock names, workers killed with SIGKILL at
//! random (and replaced), and one Redis restart. An independent log (a file
//! every worker appends to) must show no two executions of a name
//! overlapping, and every execution accounted for: ended, or cut short by a
//! kill the parent logged.
//!
//! CI runs 12 s; `SHEDLOCK_TORTURE_SECS=60 cargo test -p shedlock-redis --test torture`
//! runs the full minute.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shedlock_core::{LockConfiguration, LockingTaskExecutor, current_lock};
use shedlock_redis::RedisLockProvider;

#[path = "support/workers.rs"]
mod workers;
use shedlock_test_support::Worker;
use workers::owned_server;

const WORKERS: usize = 8;
const NAMES: [&str; 2] = ["torture-a", "torture-b"];
const LEASE: Duration = Duration::from_secs(2);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn random(bound: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now_ns());
    hasher.finish() % bound.max(1)
}

fn append(log: &str, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    // One write per line: O_APPEND keeps lines from different processes whole.
    file.write_all(format!("{line}\n").as_bytes())
        .expect("append log");
}

/// A worker process: runs random short jobs under the two locks until told time.
#[tokio::test]
#[ignore = "run by torture_keeps_exclusion_through_kills_and_a_restart as a worker process"]
async fn torture_worker() {
    let (Ok(url), Ok(log), Ok(until)) = (
        std::env::var("TORTURE_URL"),
        std::env::var("TORTURE_LOG"),
        std::env::var("TORTURE_UNTIL_NS"),
    ) else {
        return;
    };
    let until: u128 = until.parse().expect("TORTURE_UNTIL_NS");
    let pid = std::process::id();
    let executor = loop {
        match RedisLockProvider::connect(&url).await {
            Ok(provider) => break LockingTaskExecutor::new(provider),
            Err(_) if now_ns() < until => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(err) => panic!("worker could not connect: {err}"),
        }
    };
    while now_ns() < until {
        let name = NAMES[random(2) as usize];
        let config = LockConfiguration::new(name, LEASE, Duration::ZERO).expect("config");
        let ran = executor
            .execute(&config, async {
                let token = match current_lock() {
                    Some(lock) => lock
                        .fencing_token()
                        .await
                        .expect("a fencing token while the lease is held"),
                    None => 0,
                };
                append(&log, &format!("S {name} {pid} {token} {}", now_ns()));
                tokio::time::sleep(Duration::from_millis(10 + random(50))).await;
                append(&log, &format!("E {name} {pid} {token} {}", now_ns()));
            })
            .await;
        match ran {
            Ok(Some(())) => {}
            Ok(None) => tokio::time::sleep(Duration::from_millis(2 + random(10))).await,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn spawn_worker(url: &str, log: &str, until: u128) -> Worker {
    let until = until.to_string();
    Worker::spawn(
        "torture_worker",
        &[
            ("TORTURE_URL", url),
            ("TORTURE_LOG", log),
            ("TORTURE_UNTIL_NS", &until),
        ],
    )
}

#[test]
fn torture_keeps_exclusion_through_kills_and_a_restart() {
    let seconds: u64 = std::env::var("SHEDLOCK_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut server = owned_server();
    let log = std::env::temp_dir()
        .join(format!("shedlock-torture-{}.log", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let _ = std::fs::remove_file(&log);
    let until = now_ns() + u128::from(seconds) * 1_000_000_000;
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|_| spawn_worker(server.url(), &log, until))
        .collect();

    let started = std::time::Instant::now();
    let (mut kills, mut restarted) = (0, false);
    while now_ns() + 1_500_000_000 < until {
        std::thread::sleep(Duration::from_millis(700 + random(800)));
        if !restarted && started.elapsed() > Duration::from_secs(seconds / 2) {
            // Down for longer than any job runs, so no job spans the restart.
            server.kill();
            append(&log, &format!("R {}", now_ns()));
            std::thread::sleep(Duration::from_secs(1));
            server.restart();
            restarted = true;
            continue;
        }
        let victim = random(WORKERS as u64) as usize;
        let pid = workers[victim].pid();
        workers[victim].kill(); // SIGKILL
        append(&log, &format!("K {pid} {}", now_ns()));
        kills += 1;
        workers[victim] = spawn_worker(server.url(), &log, until);
    }
    // Workers stop by themselves at `until`; give them a moment past it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !workers.iter_mut().all(Worker::has_exited) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(restarted, "the run was too short to restart Redis");

    let text = std::fs::read_to_string(&log).expect("read log");
    let _ = std::fs::remove_file(&log);
    let mut starts: HashMap<(String, u32, u64), u128> = HashMap::new();
    let mut ends: HashMap<(String, u32, u64), u128> = HashMap::new();
    let mut killed: HashMap<u32, u128> = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            [edge @ ("S" | "E"), name, pid, token, t] => {
                let run = (
                    name.to_string(),
                    pid.parse().unwrap(),
                    token.parse().unwrap(),
                );
                let edges = if *edge == "S" { &mut starts } else { &mut ends };
                edges.insert(run, t.parse().unwrap());
            }
            ["K", pid, t] => {
                killed.insert(pid.parse().unwrap(), t.parse().unwrap());
            }
            ["R", _] => {}
            other => panic!("malformed log line {other:?}"),
        }
    }
    let mut cut_short = 0;
    let mut per_name: HashMap<&str, Vec<(u128, u128, u64)>> = HashMap::new();
    for ((name, pid, token), start) in &starts {
        let end = match ends.get(&(name.clone(), *pid, *token)) {
            Some(end) => *end,
            None => {
                let kill = killed.get(pid).copied().unwrap_or_else(|| {
                    panic!(
                        "execution {name} by {pid} (token {token}) never ended and was not killed"
                    )
                });
                assert!(
                    kill >= *start,
                    "{pid} was killed before its execution started"
                );
                cut_short += 1;
                kill
            }
        };
        let name = NAMES
            .iter()
            .find(|n| **n == name.as_str())
            .expect("known name");
        per_name
            .entry(name)
            .or_default()
            .push((*start, end, *token));
    }
    // Tokens are per name: each lock has its own counter.
    let tokens: HashSet<(&str, u64)> = starts
        .keys()
        .map(|(name, _, token)| (name.as_str(), *token))
        .collect();
    assert_eq!(
        tokens.len(),
        starts.len(),
        "a fencing token of one name was handed out twice"
    );
    for (name, executions) in &mut per_name {
        executions.sort();
        for pair in executions.windows(2) {
            let ((_, end, token), (start, _, next)) = (pair[0], pair[1]);
            assert!(
                start >= end,
                "{name}: token {next} started {} µs before token {token} ended",
                (end - start) / 1000
            );
            assert!(
                next > token,
                "{name}: token {next} came after token {token}, but is not above it"
            );
        }
    }
    let total: usize = per_name.values().map(Vec::len).sum();
    eprintln!(
        "torture: {seconds} s, {WORKERS} workers, {kills} SIGKILLs, 1 Redis restart: \
         {total} executions ({} on {}, {} on {}), {cut_short} cut short by a kill, 0 overlaps",
        per_name.get(NAMES[0]).map_or(0, Vec::len),
        NAMES[0],
        per_name.get(NAMES[1]).map_or(0, Vec::len),
        NAMES[1],
    );
    assert!(
        per_name.len() == 2 && total > 20,
        "too few executions to mean anything: {total}"
    );
}
