//! Failover and resharding under load, against real servers the test starts.
//!
//! - Sentinel: a master, one replica and three Sentinels (quorum 2). Four
//!   worker processes run a ticking locked job through
//!   `RedisLockProvider::connect_sentinel`; mid-run the test sends
//!   `SENTINEL FAILOVER`. Replication is asynchronous, so a lease taken on
//!   the old master can be lost: double runs inside the failover window are
//!   counted, not forbidden. What must hold: no call hangs, no worker dies,
//!   every worker acquires again soon after the failover, and no tick runs
//!   twice outside the failover window.
//! - Cluster: three masters; while three tasks run a locked job every 50 ms,
//!   the lock's slot moves to another master (`CLUSTER SETSLOT` IMPORTING /
//!   MIGRATING, `MIGRATE` key by key, `SETSLOT NODE`), so calls meet `ASK`
//!   and `TRYAGAIN` mid-move and `MOVED` after it. No error may reach a job
//!   call, and runs never overlap.
//!
//! Each run asks for its fencing token, as a job that writes downstream
//! would. Sentinel runs are recorded in a file (`tick pid start_ms end_ms
//! token`, one `O_APPEND` write each), since the store may lose them. The workers are
//! this test binary again, running only `failover_worker`.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockingTaskExecutor, current_lock};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::{
    RedisCluster, RedisSentinel, RedisServer, reply_elements, server_scratch_dir,
};
use shedlock_test_support::ticks::{
    Call, CallTally, finish_workers, first_tick_after, spawn_workers, until_tick_ends,
};
use shedlock_test_support::{error_chain, now_ms, wait_for};

const MASTER_NAME: &str = "shedlock-failover";
const FAILOVER_LOCK: &str = "failover-tick";
const WORKERS: usize = 4;
/// Ticks fall on multiples of this period of the wall clock.
const PERIOD_MS: u64 = 250;
/// A worker stops at this many ticks even if the test never tells it to.
const MAX_TICKS: u64 = 200;
/// Worker `w` calls `((tick + w) % WORKERS) * STAGGER_MS` after the tick
/// starts: replicas whose schedulers fire a little apart, and a different
/// one first on each tick, so every worker acquires every few ticks.
const STAGGER_MS: u64 = 10;
/// A worker that wakes this late skips the tick (a scheduler's missed tick):
/// the latest call of a tick comes well inside the first holder's
/// `lock_at_least_for`.
const MAX_LATE: Duration = Duration::from_millis(60);
/// Also how long a lease taken on the old master just before the promotion
/// (not yet shortened by its release, which the replica never sees) can
/// keep the lock on the new master.
const LOCK_AT_MOST_FOR: Duration = Duration::from_secs(2);
const LOCK_AT_LEAST_FOR: Duration = Duration::from_millis(200);
/// How long one run of the job takes.
const JOB: Duration = Duration::from_millis(20);
/// When the failover is commanded, after the first tick.
const FAILOVER_AFTER_MS: u64 = 2_000;
/// How long the workers go on once the old master has become a replica and
/// any lease the new master inherited has ended: every worker is first on
/// one tick in four.
const RUN_AFTER_DEMOTION_MS: u64 = 2_000;
/// No call may take longer.
const MAX_CALL: Duration = Duration::from_secs(10);
/// Every worker acquires again this soon after the failover command.
const REACQUIRE_BOUND_MS: u64 = 15_000;
/// Double runs are allowed from the failover command until this long after
/// the old master became a replica (leases it took are lost then).
const WINDOW_AFTER_DEMOTION_MS: u64 = 1_000;

const SENTINELS_ENV: &str = "SHEDLOCK_FAILOVER_SENTINELS";
const FIRST_TICK_ENV: &str = "SHEDLOCK_FAILOVER_FIRST_TICK";
const RUNS_FILE_ENV: &str = "SHEDLOCK_FAILOVER_RUNS";
const STOP_FILE_ENV: &str = "SHEDLOCK_FAILOVER_STOP";
const WORKER_ENV: &str = "SHEDLOCK_FAILOVER_WORKER";

/// The fencing token of the lock the running job holds; `None` when the
/// store refuses it (the lease ended: a failover lost it) or cannot be
/// reached, as a fencing-aware job would learn before writing.
async fn running_jobs_token() -> Option<u64> {
    match current_lock() {
        Some(lock) => lock.fencing_token().await.ok(),
        None => None,
    }
}

/// One run of the job, from the runs file: `<tick> <pid> <start_ms> <end_ms>
/// <token>` (`-`: the store refused the token).
#[derive(Debug, Clone)]
struct Run {
    tick: u64,
    pid: u32,
    start_ms: u64,
    end_ms: u64,
    token: Option<u64>,
}

/// The role a server reports (`master`, `slave`), or "" when it did not
/// answer (a failover closes client connections).
fn role(server: &RedisServer) -> String {
    reply_elements(&server.command("ROLE"))
        .first()
        .map(|role| (*role).to_owned())
        .unwrap_or_default()
}

/// A scratch directory, removed when the test ends (even by a panic).
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the test saw of the failover, in wall-clock milliseconds.
#[derive(Debug)]
struct Failover {
    commanded: u64,
    /// The replica answers `ROLE` as a master.
    promoted: u64,
    /// `PTTL` of the lock key on the new master when it was promoted: a
    /// lease it inherited (negative: none).
    inherited_lease_ms: i64,
    /// All three Sentinels name the new master.
    sentinels_agree: u64,
    /// The old master answers `ROLE` as a replica (its clients were closed).
    demoted: u64,
    /// A lock value that the old master did not write first appears on the
    /// new master (polled every few ms): the first acquisition there.
    first_acquisition_on_new_master: Option<u64>,
}

impl Failover {
    /// When the new master can grant the lock to the workers: the old master
    /// no longer takes leases, and any lease the new one inherited has ended.
    fn settled(&self) -> u64 {
        let inherited_until = self
            .promoted
            .saturating_add_signed(self.inherited_lease_ms.max(0));
        self.demoted.max(inherited_until)
    }
}

/// Sends `SENTINEL FAILOVER` and watches the servers until the old master is
/// a replica and every Sentinel names the new master.
fn fail_over(
    old_master: &RedisServer,
    new_master: &RedisServer,
    sentinels: &[RedisSentinel],
    lock_key: &str,
) -> Failover {
    let new_address = format!("127.0.0.1 {}", new_master.port());
    let commanded = now_ms();
    let reply = sentinels[0].command(&format!("SENTINEL FAILOVER {MASTER_NAME}"));
    assert!(
        reply.starts_with("+OK"),
        "SENTINEL FAILOVER answered {reply:?}"
    );
    let (mut promoted, mut sentinels_agree, mut demoted, mut first_acquisition) =
        (None, None, None, None);
    let mut replicated_value: Option<String> = None;
    let mut inherited_lease_ms = -2;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = now_ms();
        if promoted.is_none() && role(new_master) == "master" {
            promoted = Some(now);
            // Replication has stopped: what the new master holds now came from
            // the old one; a different value is an acquisition on the new one.
            replicated_value = Some(new_master.command(&format!("GET {lock_key}")));
            inherited_lease_ms = reply_elements(&new_master.command(&format!("PTTL {lock_key}")))
                .first()
                .and_then(|ttl| ttl.parse().ok())
                .unwrap_or(-2);
        }
        if let Some(before) = &replicated_value
            && first_acquisition.is_none()
        {
            let value = new_master.command(&format!("GET {lock_key}"));
            if value.starts_with("$") && !value.starts_with("$-1") && value != *before {
                first_acquisition = Some(now);
            }
        }
        if sentinels_agree.is_none()
            && sentinels.iter().all(|sentinel| {
                reply_elements(
                    &sentinel.command(&format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME}")),
                )
                .join(" ")
                    == new_address
            })
        {
            sentinels_agree = Some(now);
        }
        if demoted.is_none() && promoted.is_some() && role(old_master) == "slave" {
            demoted = Some(now);
        }
        if let (Some(promoted), Some(sentinels_agree), Some(demoted)) =
            (promoted, sentinels_agree, demoted)
        {
            let failover = Failover {
                commanded,
                promoted,
                inherited_lease_ms,
                sentinels_agree,
                demoted,
                first_acquisition_on_new_master: first_acquisition,
            };
            if first_acquisition.is_some() || now > failover.settled() + RUN_AFTER_DEMOTION_MS {
                return failover;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the failover did not complete within 30 s: promoted {promoted:?}, Sentinels agree \
             {sentinels_agree:?}, old master demoted {demoted:?} (commanded at {commanded})"
        );
        std::thread::sleep(Duration::from_millis(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_hangs_no_call_and_every_worker_acquires_again() {
    let scratch = ScratchDir(server_scratch_dir("failover"));
    let dir = scratch.0.clone();
    let master = RedisServer::start_replicating(&dir.join("master"), None);
    let replica = RedisServer::start_replicating(&dir.join("replica"), Some(master.port()));
    wait_for("the replica is in sync", Duration::from_secs(10), || {
        replica
            .command("INFO replication")
            .contains("master_link_status:up")
    });
    let settings = [
        format!("sentinel down-after-milliseconds {MASTER_NAME} 5000"),
        format!("sentinel failover-timeout {MASTER_NAME} 10000"),
    ];
    let sentinels: Vec<RedisSentinel> = (0..3)
        .map(|_| RedisSentinel::start_configured(&master, MASTER_NAME, 2, &settings))
        .collect();
    // Faster discovery and demotion of the old master (4 publish periods
    // after the switch, at its next INFO): seconds instead of ~10 s.
    // Servers before Redis 7 have no SENTINEL DEBUG and take the defaults.
    for sentinel in &sentinels {
        let reply = sentinel.command("SENTINEL DEBUG info-period 250 publish-period 250");
        if !reply.starts_with("+OK") {
            println!(
                "failover: SENTINEL DEBUG not taken ({}): default periods",
                reply.trim()
            );
        }
    }
    wait_for(
        "every Sentinel knows the replica and the two other Sentinels",
        Duration::from_secs(15),
        || {
            let known = [("num-slaves", "1"), ("num-other-sentinels", "2")];
            sentinels
                .iter()
                .all(|sentinel| sentinel.reports("MASTER", MASTER_NAME, &known))
        },
    );

    let runs_file = dir.join("runs");
    let stop_file = dir.join("stop");
    std::fs::write(&runs_file, "").unwrap();
    let (runs_path, stop_path) = (
        runs_file.to_string_lossy().into_owned(),
        stop_file.to_string_lossy().into_owned(),
    );
    let sentinel_urls: Vec<&str> = sentinels.iter().map(RedisSentinel::url).collect();
    let sentinel_urls = sentinel_urls.join(",");
    let first = first_tick_after(Duration::from_millis(1_500), PERIOD_MS);
    let first_tick = first.to_string();
    let workers = spawn_workers(
        "failover_worker",
        WORKERS,
        Some(WORKER_ENV),
        &[
            (SENTINELS_ENV, &sentinel_urls),
            (FIRST_TICK_ENV, &first_tick),
            (RUNS_FILE_ENV, &runs_path),
            (STOP_FILE_ENV, &stop_path),
        ],
    );

    let failover_at = first * PERIOD_MS + FAILOVER_AFTER_MS;
    tokio::time::sleep(Duration::from_millis(failover_at.saturating_sub(now_ms()))).await;
    let lock_key = format!("job-lock:default:{FAILOVER_LOCK}");
    let failover =
        tokio::task::block_in_place(|| fail_over(&master, &replica, &sentinels, &lock_key));
    let since = |at: u64| at as i64 - failover.commanded as i64;
    println!(
        "failover: replica promoted +{} ms after SENTINEL FAILOVER, all Sentinels name it +{} ms, \
         old master a replica +{} ms, first acquisition on the new master +{}; the new master \
         inherited the lock key with PTTL {} ms",
        since(failover.promoted),
        since(failover.sentinels_agree),
        since(failover.demoted),
        failover
            .first_acquisition_on_new_master
            .map_or("(not seen)".to_owned(), |at| format!("{} ms", since(at))),
        failover.inherited_lease_ms,
    );

    let stop_after = (failover.settled() + RUN_AFTER_DEMOTION_MS).max(now_ms()) / PERIOD_MS + 1;
    std::fs::write(&stop_file, stop_after.to_string()).unwrap();
    let finish_by = until_tick_ends(stop_after, PERIOD_MS, MAX_CALL + Duration::from_secs(2));
    let outputs = finish_workers(workers, finish_by, &["worker ", "error "]).await;
    let calls = Call::reported(&outputs);
    let runs_text = std::fs::read_to_string(&runs_file).unwrap();
    drop(sentinels);
    drop(scratch);
    let runs: Vec<Run> = runs_text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [tick, pid, start_ms, end_ms, token] = fields[..] else {
                panic!("malformed run line {line:?}");
            };
            Run {
                tick: tick.parse().unwrap(),
                pid: pid.parse().unwrap(),
                start_ms: start_ms.parse().unwrap(),
                end_ms: end_ms.parse().unwrap(),
                token: token.parse().ok(),
            }
        })
        .collect();

    // No call hung.
    let slowest_ms = Call::slowest_under(&calls, MAX_CALL).took_ms();
    let count = |outcome: &str| calls.iter().filter(|call| call.outcome == outcome).count();
    println!(
        "failover: {} calls (ok {}, skip {}, err {}), slowest {slowest_ms} ms; {} runs",
        calls.len(),
        count("ok"),
        count("skip"),
        count("err"),
        runs.len()
    );
    for call in calls.iter().filter(|call| call.outcome == "err") {
        println!(
            "failover: worker {} tick {} failed, started +{} ms, after {} ms",
            call.worker,
            call.tick,
            since(call.start_ms),
            call.took_ms()
        );
    }

    // Double runs: counted inside the failover window, forbidden outside it.
    let window = failover.commanded..=failover.demoted + WINDOW_AFTER_DEMOTION_MS;
    let mut by_tick: BTreeMap<u64, Vec<&Run>> = BTreeMap::new();
    for run in &runs {
        by_tick.entry(run.tick).or_default().push(run);
    }
    let doubles: Vec<(&u64, &Vec<&Run>)> =
        by_tick.iter().filter(|(_, runs)| runs.len() > 1).collect();
    for (tick, runs) in &doubles {
        println!(
            "failover: tick {tick} ran {} times: {:?}",
            runs.len(),
            runs.iter()
                .map(|run| format!(
                    "pid {} at +{} ms (token {:?})",
                    run.pid,
                    since(run.start_ms),
                    run.token
                ))
                .collect::<Vec<_>>()
        );
    }
    let outside: Vec<_> = doubles
        .iter()
        .filter(|(_, runs)| runs.iter().any(|run| !window.contains(&run.start_ms)))
        .collect();
    let mut in_order: Vec<&Run> = runs.iter().collect();
    in_order.sort_by_key(|run| run.start_ms);
    let overlapping = in_order
        .windows(2)
        .filter(|pair| pair[1].start_ms < pair[0].end_ms)
        .count();
    let tokens: Vec<u64> = in_order.iter().filter_map(|run| run.token).collect();
    let token_drops = tokens.windows(2).filter(|pair| pair[1] <= pair[0]).count();
    let refused = in_order.len() - tokens.len();
    println!(
        "failover: {} double runs (ticks run twice) over {} ticks, {} outside the window \
         (+0..+{} ms); {overlapping} runs began before the previous one ended; fencing \
         tokens refused to {refused} runs, and did not rise {token_drops} times",
        doubles.len(),
        by_tick.len(),
        outside.len(),
        since(*window.end())
    );
    assert!(
        outside.is_empty(),
        "ticks ran twice outside the failover window: {outside:?}"
    );

    // Every worker acquires again after the failover, on the new master.
    for worker in 0..WORKERS {
        let again = calls
            .iter()
            .filter(|call| {
                call.worker == worker && call.outcome == "ok" && call.start_ms > failover.demoted
            })
            .map(|call| call.end_ms)
            .min();
        let Some(again) = again else {
            panic!(
                "worker {worker} never acquired after the old master became a replica: {calls:?}"
            );
        };
        println!(
            "failover: worker {worker} acquired again +{} ms after SENTINEL FAILOVER ({} ms after \
             the old master became a replica)",
            since(again),
            again - failover.demoted
        );
        assert!(
            again - failover.commanded <= REACQUIRE_BOUND_MS,
            "worker {worker} acquired again only {} ms after the failover command",
            again - failover.commanded
        );
    }
    let first_run_after = runs
        .iter()
        .map(|run| run.start_ms)
        .filter(|at| *at > failover.demoted)
        .min();
    let Some(first_run_after) = first_run_after else {
        panic!("no job ran after the failover: {runs:?}");
    };
    println!(
        "failover: first run after the old master became a replica: +{} ms",
        since(first_run_after)
    );
    assert!(
        runs.iter().any(|run| run.start_ms < failover.commanded),
        "no job ran before the failover: {runs:?}"
    );
}

/// One worker process: runs the locked job on every tick from
/// `FIRST_TICK_ENV` until the tick written in `STOP_FILE_ENV`, and reports
/// each call. Does nothing when run as a plain (ignored) test.
#[tokio::test]
#[ignore = "a worker process of a_sentinel_failover_under_load_hangs_no_call_and_every_worker_acquires_again"]
async fn failover_worker() -> Result<(), Box<dyn Error>> {
    let Ok(sentinels) = std::env::var(SENTINELS_ENV) else {
        return Ok(());
    };
    let sentinels: Vec<&str> = sentinels.split(',').collect();
    let first: u64 = std::env::var(FIRST_TICK_ENV)?.parse()?;
    let runs_file = std::env::var(RUNS_FILE_ENV)?;
    let stop_file = std::env::var(STOP_FILE_ENV)?;
    let worker: u64 = std::env::var(WORKER_ENV)?.parse()?;
    let pid = std::process::id();

    let executor = LockingTaskExecutor::new(
        RedisLockProvider::connect_sentinel(&sentinels, MASTER_NAME)
            .await?
            .with_locked_by(format!("worker-{worker}")),
    );
    let config = LockConfiguration::new(FAILOVER_LOCK, LOCK_AT_MOST_FOR, LOCK_AT_LEAST_FOR)?;

    let mut tally = CallTally::new(worker);
    for tick in first..first + MAX_TICKS {
        let stop = std::fs::read_to_string(&stop_file).ok();
        if stop
            .and_then(|last| last.trim().parse::<u64>().ok())
            .is_some_and(|last| tick > last)
        {
            break;
        }
        let due = tick * PERIOD_MS + (tick + worker) % WORKERS as u64 * STAGGER_MS;
        if !tally.on_time(due, MAX_LATE).await {
            continue;
        }
        let run = executor.execute(&config, async {
            let token = running_jobs_token().await;
            let run_start = now_ms();
            tokio::time::sleep(JOB).await;
            // One write of one short line with O_APPEND: lines never interleave.
            let mut file = std::fs::OpenOptions::new().append(true).open(&runs_file)?;
            file.write_all(
                format!(
                    "{tick} {pid} {run_start} {} {}\n",
                    now_ms(),
                    token.map_or("-".to_owned(), |token| token.to_string())
                )
                .as_bytes(),
            )
        });
        if let Some(written) = tally.call(tick, run).await {
            written?;
        }
    }
    tally.print_summary();
    Ok(())
}

const RESHARD_LOCK: &str = "reshard-tick";
const RESHARD_TASKS: usize = 3;
/// Each task calls every this often.
const RESHARD_EVERY: Duration = Duration::from_millis(50);
/// How long one run of the job takes.
const RESHARD_JOB: Duration = Duration::from_millis(5);
/// How long calls run before and after the move.
const RESHARD_SETTLE: Duration = Duration::from_millis(1_500);
/// How long the slot stays MIGRATING before its keys move: calls meet `ASK`
/// for a key not on the source (a free lock) meanwhile.
const RESHARD_PAUSE: Duration = Duration::from_millis(400);
/// How long after each key moved the next one moves: calls meet `TRYAGAIN`
/// (a command or script whose keys are split between the two nodes).
const RESHARD_KEY_PAUSE: Duration = Duration::from_millis(200);

/// One node of the cluster as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
struct ClusterNode {
    id: String,
    port: u16,
    master: bool,
    /// Slot ranges it serves, inclusive.
    slots: Vec<(u16, u16)>,
}

fn cluster_nodes(cluster: &RedisCluster) -> Vec<ClusterNode> {
    let reply = cluster.node(0).command("CLUSTER NODES");
    reply
        .lines()
        .filter(|line| !line.starts_with('$') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|address| address.rsplit(':').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or_else(|| panic!("no port in CLUSTER NODES line {line:?}"));
            let slots = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .map(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    (from.parse().unwrap(), to.parse().unwrap())
                })
                .collect();
            ClusterNode {
                id: fields[0].to_owned(),
                port,
                master: fields[2].contains("master"),
                slots,
            }
        })
        .collect()
}

/// One call of a task: when it started and ended, and what it returned.
#[derive(Debug)]
struct ReshardCall {
    task: usize,
    start: Instant,
    end: Instant,
    outcome: Result<bool, String>,
}

/// One run of the job, with its fencing token.
#[derive(Debug, Clone, Copy)]
struct ReshardRun {
    start: Instant,
    end: Instant,
    token: Option<u64>,
}

/// Moves `slot` from the master `from` to the master `to` the way
/// `redis-cli --cluster reshard` does, with pauses so calls meet each state.
fn move_slot(cluster: &RedisCluster, slot: u16, from: &ClusterNode, to: &ClusterNode) {
    let node = |wanted: &ClusterNode| {
        (0..cluster.len())
            .map(|index| cluster.node(index))
            .find(|node| node.port() == wanted.port)
            .unwrap_or_else(|| panic!("no node on port {}", wanted.port))
    };
    let (source, target) = (node(from), node(to));
    let set_slot = |node: &RedisServer, state: String| {
        let reply = node.command(&format!("CLUSTER SETSLOT {slot} {state}"));
        assert!(
            reply.starts_with("+OK"),
            "SETSLOT {slot} {state} on port {} answered {reply:?}",
            node.port()
        );
    };
    let started = Instant::now();
    set_slot(target, format!("IMPORTING {}", from.id));
    set_slot(source, format!("MIGRATING {}", to.id));
    std::thread::sleep(RESHARD_PAUSE);
    loop {
        let reply = source.command(&format!("CLUSTER GETKEYSINSLOT {slot} 10"));
        let keys: Vec<String> = reply_elements(&reply)
            .iter()
            .map(|key| (*key).to_owned())
            .collect();
        if keys.is_empty() {
            break;
        }
        for key in keys {
            let reply = source.command(&format!("MIGRATE 127.0.0.1 {} {key} 0 5000", to.port));
            assert!(
                reply.starts_with("+OK") || reply.starts_with("+NOKEY"),
                "MIGRATE {key} answered {reply:?}"
            );
            println!("reshard: +{:?}: moved {key}", started.elapsed());
            std::thread::sleep(RESHARD_KEY_PAUSE);
        }
    }
    // The new owner first, so the old one's MOVED points at a node that agrees.
    println!(
        "reshard: +{:?}: every key moved, assigning the slot",
        started.elapsed()
    );
    set_slot(target, format!("NODE {}", to.id));
    set_slot(source, format!("NODE {}", to.id));
    for index in 0..cluster.len() {
        let other = cluster.node(index);
        if other.port() != from.port && other.port() != to.port {
            set_slot(other, format!("NODE {}", to.id));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_locks_slot_under_load_fails_no_call_and_keeps_runs_apart() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap(),
    );
    let urls = cluster.urls();
    let lock_key = format!("job-lock:default:{RESHARD_LOCK}");
    let slot: u16 = reply_elements(
        &cluster
            .node(0)
            .command(&format!("CLUSTER KEYSLOT {lock_key}")),
    )
    .first()
    .and_then(|slot| slot.parse().ok())
    .expect("CLUSTER KEYSLOT answers a number");
    let nodes = cluster_nodes(&cluster);
    let masters: Vec<&ClusterNode> = nodes.iter().filter(|node| node.master).collect();
    let from = masters
        .iter()
        .position(|node| node.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes:?}"));
    let to = (from + 1) % masters.len();
    let (from, to) = (masters[from], masters[to]);
    println!(
        "reshard: lock key {lock_key} is in slot {slot}, moving from port {} to port {}",
        from.port, to.port
    );

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let runs = Arc::new(Mutex::new(Vec::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let config =
        LockConfiguration::new(RESHARD_LOCK, Duration::from_secs(5), Duration::ZERO).unwrap();
    let mut tasks = Vec::new();
    for task in 0..RESHARD_TASKS {
        let nodes: Vec<String> = urls.clone();
        let (stop, calls, runs, inside, overlaps, config) = (
            stop.clone(),
            calls.clone(),
            runs.clone(),
            inside.clone(),
            overlaps.clone(),
            config.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            let executor = LockingTaskExecutor::new(
                RedisLockProvider::connect_cluster(&nodes)
                    .await
                    .unwrap_or_else(|err| panic!("cannot connect to the test cluster: {err}"))
                    .with_locked_by(format!("task-{task}")),
            );
            // Tasks fire a third of a period apart.
            tokio::time::sleep(RESHARD_EVERY * task as u32 / RESHARD_TASKS as u32).await;
            let mut ticks = tokio::time::interval(RESHARD_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let start = Instant::now();
                let result = executor
                    .execute(&config, async {
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        let token = running_jobs_token().await;
                        let run_start = Instant::now();
                        tokio::time::sleep(RESHARD_JOB).await;
                        let run = ReshardRun {
                            start: run_start,
                            end: Instant::now(),
                            token,
                        };
                        inside.fetch_sub(1, Ordering::SeqCst);
                        run
                    })
                    .await;
                let outcome = match result {
                    Ok(Some(run)) => {
                        runs.lock().unwrap().push(run);
                        Ok(true)
                    }
                    Ok(None) => Ok(false),
                    Err(err) => Err(error_chain(&err)),
                };
                calls.lock().unwrap().push(ReshardCall {
                    task,
                    start,
                    end: Instant::now(),
                    outcome,
                });
            }
        }));
    }

    tokio::time::sleep(RESHARD_SETTLE).await;
    let move_start = Instant::now();
    {
        let (cluster, from, to) = (cluster.clone(), from.clone(), to.clone());
        tokio::task::spawn_blocking(move || move_slot(&cluster, slot, &from, &to))
            .await
            .unwrap();
    }
    let move_end = Instant::now();
    let target = (0..cluster.len())
        .map(|index| cluster.node(index))
        .find(|node| node.port() == to.port)
        .expect("the target is a node");
    println!(
        "reshard: right after the move the target holds {lock_key} = {:?}, PTTL {:?}",
        target.command(&format!("GET {lock_key}")),
        target.command(&format!("PTTL {lock_key}"))
    );
    tokio::time::sleep(RESHARD_SETTLE).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    let mut runs = std::mem::take(&mut *runs.lock().unwrap());
    let during: Vec<&ReshardCall> = calls
        .iter()
        .filter(|call| call.end >= move_start && call.start <= move_end)
        .collect();
    let count = |wanted: Result<bool, ()>| {
        during
            .iter()
            .filter(|call| call.outcome.as_ref().map(|ran| *ran).map_err(|_| ()) == wanted)
            .count()
    };
    let slowest = calls
        .iter()
        .map(|call| call.end - call.start)
        .max()
        .unwrap_or_default();
    println!(
        "reshard: the move took {:?}; {} calls in all, {} during the move ({} ran, {} skipped, {} \
         failed); slowest call {slowest:?}",
        move_end - move_start,
        calls.len(),
        during.len(),
        count(Ok(true)),
        count(Ok(false)),
        count(Err(())),
    );
    runs.sort_by_key(|run| run.start);
    let apart = runs.windows(2).all(|pair| pair[1].start >= pair[0].end);
    let tokens: Vec<u64> = runs.iter().filter_map(|run| run.token).collect();
    let token_drops = tokens.windows(2).filter(|pair| pair[1] <= pair[0]).count();
    let refused = runs.len() - tokens.len();
    let first_run_after = runs
        .iter()
        .find(|run| run.start > move_end)
        .map(|run| run.start - move_end);
    println!(
        "reshard: {} runs, {} overlapping, fencing tokens refused to {refused} runs and did not \
         rise {token_drops} times; first run {first_run_after:?} after the move",
        runs.len(),
        overlaps.load(Ordering::SeqCst),
    );
    let failed: Vec<&ReshardCall> = calls.iter().filter(|call| call.outcome.is_err()).collect();
    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for call in &failed {
        let at = if call.start < move_start {
            format!("-{:?}", move_start - call.start)
        } else {
            format!("+{:?}", call.start - move_start)
        };
        if let Err(err) = &call.outcome {
            failures
                .entry(err)
                .or_default()
                .push(format!("task {} at {at}", call.task));
        }
    }
    for (err, when) in &failures {
        println!(
            "reshard: {} calls failed (from the move's start: {}): {err}",
            when.len(),
            when.join(", ")
        );
    }

    assert!(
        failed.is_empty(),
        "{} calls failed during or after the move",
        failed.len()
    );
    // Runs never overlap.
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "runs overlapped");
    assert!(apart, "two runs overlapped: {runs:?}");
    // Fencing tokens rise strictly per name across the move, and a running
    // job always gets one.
    assert_eq!(refused, 0, "fencing tokens were refused to running jobs");
    assert_eq!(token_drops, 0, "fencing tokens did not rise: {tokens:?}");
    // Jobs go on after the move, on the new owner.
    for task in 0..RESHARD_TASKS {
        assert!(
            calls
                .iter()
                .any(|call| call.task == task && call.start > move_end && call.outcome.is_ok()),
            "task {task} made no successful call after the move"
        );
    }
    assert!(first_run_after.is_some(), "no job ran after the move");
    let owner = cluster_nodes(&cluster)
        .into_iter()
        .find(|node| node.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        .map(|node| node.port);
    assert_eq!(owner, Some(to.port), "slot {slot} did not move");
}
