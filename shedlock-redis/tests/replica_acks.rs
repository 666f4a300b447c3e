//! Replica acknowledgement (`RedisLockProvider::with_replica_acks`), against
//! real servers the test starts.
//!
//! - A master alone: acquisitions, exclusive and shared, are refused with
//!   how many replicas acknowledged, and leave no key behind. With a replica
//!   in sync they count, and the replica has the lease when the answer
//!   arrives; a replica that goes away fails the next extension.
//! - Crash failover: a master, one replica and a Sentinel. The replica
//!   replicates through a proxy, which cuts the link, or delays the master's
//!   stream by `REPLICATION_LAG`, so the write of A's lease has not reached
//!   the replica when the master dies. Provider A takes a lock with a 30 s
//!   lease through Sentinel, the master is killed (SIGKILL, and what is in
//!   flight on the link is lost with it, as with the machine), Sentinel
//!   promotes the replica, and provider B asks for the same lock. Without
//!   acknowledgement B gets a lock A still holds, in every trial; with it,
//!   A's acquisition is refused (cut link) or acknowledged, and then B is
//!   refused (lagging link): no run is doubled. `SHEDLOCK_FAILOVER_TRIALS`
//!   sets the trials per test (2 by default, one per kind of link).
//! - Cluster: `WAIT` goes with the acquisition script to the master of the
//!   lock's slot: a lock on the master with a replica is acknowledged, a
//!   lock on a master without one is refused.
//! - The cost per lock cycle, with and without acknowledgement (ignored:
//!   `cargo test --release -p shedlock-redis --all-features --test
//!   replica_acks -- --ignored --nocapture cost`; BENCHMARKS.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shedlock_core::{LockConfiguration, LockError, LockGuard, LockProvider};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::proxy::{Direction, FaultProxy};
use shedlock_test_support::redis::{
    RedisCluster, RedisSentinel, RedisServer, reply_elements, server_scratch_dir,
};
use shedlock_test_support::{error_chain, wait_for};
use tokio::task::block_in_place;

const MASTER_NAME: &str = "shedlock-replica-acks";
/// A's lease: far longer than a trial, so A holds the lock throughout.
const LEASE: Duration = Duration::from_secs(30);
/// How long `WAIT` waits in the failover trials: above the lagging link's
/// delay, below the Sentinel provider's response timeout (2 s).
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How late the lagging link delivers the master's replication stream.
const REPLICATION_LAG: Duration = Duration::from_millis(300);
const TRIALS_ENV: &str = "SHEDLOCK_FAILOVER_TRIALS";
const CYCLES_ENV: &str = "SHEDLOCK_ACKS_CYCLES";

/// A scratch directory, removed when the test ends (even by a panic).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a replica of `master` (directly, or through `link`) and waits
/// until it acknowledges writes: a replica just in sync answers `WAIT` only
/// about a second later (Redis 7.0).
fn start_replica(dir: &Path, master: &RedisServer, link: Option<u16>) -> RedisServer {
    let replica = RedisServer::start_replicating(dir, Some(link.unwrap_or(master.port())));
    wait_for(
        "the replica acknowledges writes",
        Duration::from_secs(10),
        || acknowledges_writes(master),
    );
    replica
}

/// Whether one replica of `master` acknowledges a write within 100 ms: a
/// write and `WAIT` on one connection (the test support's `command` opens
/// one per command, and `WAIT` counts only that connection's writes).
fn acknowledges_writes(master: &RedisServer) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", master.port())) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let probe = "shedlock-test:replica-probe";
    if stream
        .write_all(format!("SET {probe} 1\r\nWAIT 1 100\r\nDEL {probe}\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut replies = String::new();
    let mut buffer = [0; 256];
    // +OK, WAIT's count, DEL's count.
    while replies.matches("\r\n").count() < 3 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => replies.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    replies.split("\r\n").nth(1) == Some(":1")
}

fn exclusive(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, LEASE, Duration::ZERO)
        .unwrap_or_else(|err| panic!("configuration of {name}: {err}"))
}

fn shared(name: &str) -> LockConfiguration {
    exclusive(name)
        .with_permits(2)
        .unwrap_or_else(|err| panic!("configuration of {name}: {err}"))
}

/// The key of a lock's shared holders (see the crate docs).
fn holders_key(provider: &RedisLockProvider, name: &str) -> String {
    format!("{{{}}}:holders", provider.lock_key(name))
}

async fn connect(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

fn acknowledged(provider: RedisLockProvider, timeout: Duration) -> RedisLockProvider {
    provider
        .with_replica_acks(1, timeout)
        .unwrap_or_else(|err| panic!("with_replica_acks(1, {timeout:?}): {err}"))
}

async fn take(provider: &RedisLockProvider, config: &LockConfiguration) -> LockGuard {
    match provider.try_lock(config).await {
        Ok(Some(guard)) => guard,
        Ok(None) => panic!("lock '{}' was held elsewhere", config.name()),
        Err(err) => panic!("lock '{}': {}", config.name(), error_chain(&err)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_replica_an_acquisition_is_refused_saying_how_many_acknowledged_and_leaves_no_key()
{
    let scratch = ScratchDir(server_scratch_dir("replica-acks"));
    let master = block_in_place(|| RedisServer::start_replicating(&scratch.0.join("alone"), None));
    let plain = connect(&master).await;
    for (replicas, timeout) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
        let refused = plain.clone().with_replica_acks(replicas, timeout);
        assert!(
            matches!(&refused, Err(LockError::InvalidConfiguration(message)) if message.contains("with_replica_acks")),
            "with_replica_acks({replicas}, {timeout:?}): {refused:?}"
        );
    }
    let provider = acknowledged(plain, Duration::from_millis(100));
    for config in [exclusive("alone-exclusive"), shared("alone-shared")] {
        let name = config.name().to_owned();
        let started = Instant::now();
        let err = match provider.try_lock(&config).await {
            Err(err) => err,
            Ok(guard) => {
                panic!("lock '{name}' counted with no replica to acknowledge it: {guard:?}")
            }
        };
        let message = err.to_string();
        println!("{name}: refused after {:?}: {message}", started.elapsed());
        assert!(
            matches!(err, LockError::Store { .. })
                && message.contains(&format!("while acquiring lock '{name}'"))
                && message.contains("0 of 1 replica(s) asked acknowledged the write within 100ms")
                && message.contains("the lock was not taken (the lease was given back)"),
            "{message}"
        );
        assert!(
            !master.exists(&provider.lock_key(&name)),
            "lock '{name}' left its key behind"
        );
        assert!(
            !master.exists(&holders_key(&provider, &name)),
            "lock '{name}' left a shared holder behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_replica_in_sync_leases_count_once_the_replica_has_them() {
    let scratch = ScratchDir(server_scratch_dir("replica-acks"));
    let master = block_in_place(|| RedisServer::start_replicating(&scratch.0.join("master"), None));
    let replica = block_in_place(|| start_replica(&scratch.0.join("replica"), &master, None));
    let provider = acknowledged(connect(&master).await, Duration::from_secs(1));

    let mut exclusive_guard = take(&provider, &exclusive("synced-exclusive")).await;
    // Acknowledged: the replica has the lease when the answer arrives.
    assert!(replica.exists(&provider.lock_key("synced-exclusive")));
    assert_eq!(
        exclusive_guard.extend(LEASE, Duration::ZERO).await.ok(),
        Some(true)
    );
    let shared_guard = take(&provider, &shared("synced-shared")).await;
    assert!(replica.exists(&holders_key(&provider, "synced-shared")));

    // A server that forgot its scripts: loaded again, then sent with WAIT again.
    assert!(master.command("SCRIPT FLUSH").starts_with("+OK"));
    let reloaded = take(&provider, &shared("after-script-flush")).await;
    assert!(replica.exists(&holders_key(&provider, "after-script-flush")));
    assert!(master.command("SCRIPT FLUSH").starts_with("+OK"));
    assert_eq!(
        exclusive_guard.extend(LEASE, Duration::ZERO).await.ok(),
        Some(true)
    );

    for guard in [exclusive_guard, shared_guard, reloaded] {
        guard
            .unlock()
            .await
            .unwrap_or_else(|err| panic!("unlock: {err}"));
    }
    assert!(!master.exists(&provider.lock_key("synced-exclusive")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_no_replica_acknowledges_an_extension_fails_and_acquisitions_are_refused() {
    let scratch = ScratchDir(server_scratch_dir("replica-acks"));
    let master = block_in_place(|| RedisServer::start_replicating(&scratch.0.join("master"), None));
    let replica = block_in_place(|| start_replica(&scratch.0.join("replica"), &master, None));
    let provider = acknowledged(connect(&master).await, ACK_TIMEOUT);
    let mut guard = take(&provider, &exclusive("replica-leaves")).await;

    assert!(replica.command("REPLICAOF NO ONE").starts_with("+OK"));
    block_in_place(|| {
        wait_for("the master has no replica", Duration::from_secs(10), || {
            master
                .command("INFO replication")
                .contains("connected_slaves:0")
        })
    });
    let err = match guard.extend(LEASE, Duration::ZERO).await {
        Err(err) => err,
        Ok(extended) => panic!("an extension no replica acknowledged answered {extended}"),
    };
    let message = err.to_string();
    println!("extension: {message}");
    assert!(
        message.contains("while extending lock key 'job-lock:default:replica-leaves'")
            && message.contains("0 of 1 replica(s) asked acknowledged the write within 1s")
            && message.contains("extended on the master only"),
        "{message}"
    );
    let refused = provider.try_lock(&exclusive("after-replica-left")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|err| err.to_string().contains("0 of 1 replica(s)")),
        "{refused:?}"
    );
    assert!(!master.exists(&provider.lock_key("after-replica-left")));
    guard
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("unlock: {err}"));
}

// Crash failover.

/// What the replication link does from just before A's acquisition.
#[derive(Clone, Copy, Debug)]
enum LinkFault {
    /// Swallows everything both ways: the write never reaches the replica.
    Cut,
    /// Delivers the master's stream `REPLICATION_LAG` late: the write is
    /// still on its way when the master dies.
    Lagging,
}

/// What one crash-failover trial saw.
#[derive(Debug)]
struct Trial {
    link: LinkFault,
    /// A's acquisition: `Ok(true)` counted (A runs its job), `Ok(false)`
    /// held elsewhere, `Err` refused with this message.
    a: Result<bool, String>,
    a_took: Duration,
    /// Whether the replica had A's lock key when the master was killed.
    replica_had_it: bool,
    /// From the kill until Sentinel named the replica.
    failover_took: Duration,
    /// Whether B, asking the promoted replica, took the lock.
    b_took_it: bool,
}

impl Trial {
    /// A second holder while the first still runs.
    fn doubled(&self) -> bool {
        matches!(self.a, Ok(true)) && self.b_took_it
    }
}

fn trial_count() -> usize {
    std::env::var(TRIALS_ENV)
        .ok()
        .and_then(|trials| trials.parse().ok())
        .filter(|trials| *trials > 0)
        .unwrap_or(2)
}

/// One trial: master, replica behind `link`, a Sentinel; A takes the lock
/// (with `acks` when given), the master dies, the replica is promoted, B
/// (without acknowledgement: the new master has no replica left, and B's
/// answer is there to say whether A's lease survived) asks for the lock.
async fn crash_failover_trial(acks: Option<Duration>, fault: LinkFault) -> Trial {
    let scratch = ScratchDir(server_scratch_dir("replica-acks-failover"));
    let mut master =
        block_in_place(|| RedisServer::start_replicating(&scratch.0.join("master"), None));
    let master_addr = SocketAddr::from(([127, 0, 0, 1], master.port()));
    let link = FaultProxy::start(master_addr).await;
    let link_port: u16 = link
        .url()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("proxy URL {} has no port", link.url()));
    let replica =
        block_in_place(|| start_replica(&scratch.0.join("replica"), &master, Some(link_port)));
    // A long failover-timeout: Sentinel would otherwise, that long after it
    // found the replica, point it at the master directly (past the link).
    // It does not slow a failover to the only replica.
    let settings = [
        format!("sentinel down-after-milliseconds {MASTER_NAME} 500"),
        format!("sentinel failover-timeout {MASTER_NAME} 60000"),
    ];
    let sentinel = block_in_place(|| {
        let sentinel = RedisSentinel::start_configured(&master, MASTER_NAME, 1, &settings);
        // Finds the replica sooner (Redis 7 and later; else the defaults).
        sentinel.command("SENTINEL DEBUG info-period 100");
        wait_for(
            "the Sentinel knows the replica and its link",
            Duration::from_secs(15),
            || {
                let port = replica.port().to_string();
                let link = [
                    ("port", &*port),
                    ("flags", "slave"),
                    ("master-link-status", "ok"),
                ];
                sentinel.reports("REPLICAS", MASTER_NAME, &link)
            },
        );
        sentinel
    });
    let sentinels = [sentinel.url()];
    let a = RedisLockProvider::connect_sentinel(&sentinels, MASTER_NAME)
        .await
        .unwrap_or_else(|err| panic!("A cannot connect through Sentinel: {err}"));
    let a = match acks {
        Some(timeout) => acknowledged(a, timeout),
        None => a,
    };
    let config = exclusive("crash-failover");
    let lock_key = a.lock_key(config.name());

    match fault {
        LinkFault::Cut => link.set_black_hole(true),
        LinkFault::Lagging => link.set_latency(Direction::ToClient, REPLICATION_LAG),
    }
    let started = Instant::now();
    let a_answer = a.try_lock(&config).await;
    let a_took = started.elapsed();
    // The master's machine dies: what is in flight on the link is lost.
    link.set_black_hole(true);
    link.reset_all();
    let replica_had_it = replica.exists(&lock_key);
    let killed = Instant::now();
    block_in_place(|| master.kill());
    let (a_guard, a) = match a_answer {
        Ok(Some(guard)) => (Some(guard), Ok(true)),
        Ok(None) => (None, Ok(false)),
        Err(err) => (None, Err(err.to_string())),
    };

    let promoted = replica.port().to_string();
    block_in_place(|| {
        wait_for(
            "Sentinel names the promoted replica as the master",
            Duration::from_secs(30),
            || {
                // Until the switch, Sentinel still names the dead master
                // (flagged down), which clients refuse.
                let promoted = [("port", &*promoted), ("flags", "master")];
                sentinel.reports("MASTER", MASTER_NAME, &promoted)
            },
        )
    });
    let failover_took = killed.elapsed();
    let b = RedisLockProvider::connect_sentinel(&sentinels, MASTER_NAME)
        .await
        .unwrap_or_else(|err| panic!("B cannot connect through Sentinel: {err}"));
    let b_guard = match b.try_lock(&config).await {
        Ok(guard) => guard,
        Err(err) => panic!("B's acquisition failed: {}", error_chain(&err)),
    };
    let trial = Trial {
        link: fault,
        a,
        a_took,
        replica_had_it,
        failover_took,
        b_took_it: b_guard.is_some(),
    };
    drop((a_guard, b_guard));
    drop(sentinel);
    trial
}

/// Runs the trials, alternating the kinds of link, and reports each.
async fn crash_failover_trials(acks: Option<Duration>) -> Vec<Trial> {
    let label = match acks {
        Some(timeout) => format!("with_replica_acks(1, {timeout:?})"),
        None => "without replica acks".to_owned(),
    };
    let mut trials = Vec::new();
    for number in 0..trial_count() {
        let fault = [LinkFault::Cut, LinkFault::Lagging][number % 2];
        let trial = crash_failover_trial(acks, fault).await;
        println!(
            "{label}, trial {} ({:?} link): A {} in {:?}; the replica {} the lease at the kill; \
             promoted {:?} after the kill; B {}{}",
            number + 1,
            trial.link,
            match &trial.a {
                Ok(true) => "took the lock".to_owned(),
                Ok(false) => "found the lock held".to_owned(),
                Err(message) => format!("was refused ({message})"),
            },
            trial.a_took,
            if trial.replica_had_it {
                "had"
            } else {
                "lacked"
            },
            trial.failover_took,
            if trial.b_took_it {
                "took the lock"
            } else {
                "found the lock held"
            },
            if trial.doubled() {
                ": DOUBLED, A still holds it"
            } else {
                ""
            },
        );
        trials.push(trial);
    }
    let doubled = trials.iter().filter(|trial| trial.doubled()).count();
    println!(
        "{label}: {doubled} of {} trials let B take a lock A still held",
        trials.len()
    );
    trials
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replica_acks_a_crash_failover_lets_a_second_process_take_a_held_lock() {
    let trials = crash_failover_trials(None).await;
    for trial in &trials {
        assert!(
            trial.doubled() && !trial.replica_had_it,
            "the write was to be lost with the master and B to take the lock A held: {trial:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_a_crash_failover_never_doubles_a_run() {
    let trials = crash_failover_trials(Some(ACK_TIMEOUT)).await;
    for trial in &trials {
        assert!(!trial.doubled(), "B took a lock A still held: {trial:?}");
        match trial.link {
            // Never acknowledged: refused, so A never runs.
            LinkFault::Cut => assert!(
                trial
                    .a
                    .as_ref()
                    .is_err_and(|message| message.contains("0 of 1 replica(s)")),
                "{trial:?}"
            ),
            // Acknowledged late: counted, and the promoted replica has it.
            LinkFault::Lagging => assert!(
                matches!(trial.a, Ok(true))
                    && trial.replica_had_it
                    && !trial.b_took_it
                    && trial.a_took >= REPLICATION_LAG,
                "{trial:?}"
            ),
        }
    }
}

// Cluster.

/// The slot ranges a cluster node serves, from its `CLUSTER NODES` line.
fn served_slots(node: &RedisServer) -> Vec<(u16, u16)> {
    let nodes = node.command("CLUSTER NODES");
    let Some(myself) = nodes.lines().find(|line| line.contains("myself")) else {
        panic!("CLUSTER NODES has no line for the node itself: {nodes:?}");
    };
    myself
        .split(' ')
        .skip(8)
        .filter_map(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
        })
        .collect()
}

fn keyslot(node: &RedisServer, key: &str) -> u16 {
    let reply = node.command(&format!("CLUSTER KEYSLOT {key}"));
    reply_elements(&reply)
        .first()
        .and_then(|slot| slot.parse().ok())
        .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key} answered {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_wait_counts_the_replicas_of_the_locks_own_master() {
    let mut cluster = block_in_place(RedisCluster::start);
    block_in_place(|| cluster.add_replica(0));
    let with_replica = served_slots(cluster.node(0));
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let provider = RedisLockProvider::connect_cluster(&nodes)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test cluster: {err}"));
    let provider = acknowledged(provider, ACK_TIMEOUT);
    let on_replicated_master = |yes: bool| {
        (0..1000)
            .map(|i| format!("cluster-acks-{i}"))
            .find(|name| {
                let slot = keyslot(cluster.node(0), &provider.lock_key(name));
                with_replica
                    .iter()
                    .any(|(first, last)| (*first..=*last).contains(&slot))
                    == yes
            })
            .unwrap_or_else(|| panic!("no lock name found on the wanted master"))
    };
    let (replicated, alone) = (on_replicated_master(true), on_replicated_master(false));

    let guard = take(&provider, &exclusive(&replicated)).await;
    let replica_keys = reply_elements(&cluster.replica(0).command("DBSIZE"))
        .first()
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        replica_keys.is_some_and(|count| count > 0),
        "the replica has no key once the lease was acknowledged: {replica_keys:?}"
    );
    let refused = provider.try_lock(&exclusive(&alone)).await;
    let message = match &refused {
        Err(err) => err.to_string(),
        Ok(guard) => panic!("lock '{alone}' counted on a master without a replica: {guard:?}"),
    };
    println!("cluster, master without a replica: {message}");
    assert!(
        message.contains("0 of 1 replica(s)") && message.contains("the lock was not taken"),
        "{message}"
    );
    for index in 0..cluster.len() {
        assert!(
            !cluster
                .node(index)
                .command(&format!("EXISTS {}", provider.lock_key(&alone)))
                .starts_with(":1"),
            "the refused lease was left on node {index}"
        );
    }
    guard
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("unlock: {err}"));
}

// Cost.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures the cost of a lock cycle with and without replica acks: run with --ignored --nocapture"]
async fn cost_of_replica_acks_per_lock_cycle() {
    let cycles: usize = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|cycles| cycles.parse().ok())
        .unwrap_or(4000);
    let scratch = ScratchDir(server_scratch_dir("replica-acks-cost"));
    let master = block_in_place(|| RedisServer::start_replicating(&scratch.0.join("master"), None));
    let _replica = block_in_place(|| start_replica(&scratch.0.join("replica"), &master, None));
    let plain_provider = connect(&master).await;
    let acked_provider = acknowledged(connect(&master).await, Duration::from_secs(1));
    let config = exclusive("cost");
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // Interleaved in blocks of 20, so both see the same machine.
    for block in 0..(cycles / 20).max(1) {
        for (which, provider) in [&plain_provider, &acked_provider].into_iter().enumerate() {
            for _ in 0..20 {
                let started = Instant::now();
                let guard = take(provider, &config).await;
                guard
                    .unlock()
                    .await
                    .unwrap_or_else(|err| panic!("unlock: {err}"));
                if block > 0 {
                    times[which].push(started.elapsed());
                }
            }
        }
    }
    let summary = |times: &mut Vec<Duration>| {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        (at(0.5), at(0.9), at(0.99), mean)
    };
    let [plain_times, acked_times] = &mut times;
    let plain = summary(plain_times);
    let acked = summary(acked_times);
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "replica acks, {} cycles each (try_lock + unlock, exclusive, one replica in sync):",
        plain_times.len()
    );
    for (label, (p50, p90, p99, mean)) in [("without", plain), ("with_replica_acks(1, 1s)", acked)]
    {
        println!(
            "  {label}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, mean {:.1} µs",
            micros(p50),
            micros(p90),
            micros(p99),
            micros(mean)
        );
    }
    println!(
        "  acknowledgement costs {:.1} µs at p50 ({:.2}x), {:.1} µs on the mean",
        micros(acked.0) - micros(plain.0),
        micros(acked.0) / micros(plain.0),
        micros(acked.3) - micros(plain.3)
    );

    // Throughput: `WAIT` holds the provider's one connection on the server
    // until the replica answers, so concurrent cycles queue behind it.
    let mut rates = Vec::new();
    for provider in [&plain_provider, &acked_provider] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT_TASKS)
            .map(|task| {
                let provider = provider.clone();
                let per_task = cycles / CONCURRENT_TASKS;
                tokio::spawn(async move {
                    let config = exclusive(&format!("cost-{task}"));
                    for _ in 0..per_task {
                        take(&provider, &config)
                            .await
                            .unlock()
                            .await
                            .unwrap_or_else(|err| panic!("unlock: {err}"));
                    }
                    per_task
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap_or_else(|err| panic!("cycle task: {err}"));
        }
        rates.push(done as f64 / started.elapsed().as_secs_f64());
    }
    println!(
        "  {CONCURRENT_TASKS} tasks on one provider: {:.0} cycles/s without, {:.0} with ({:.2}x)",
        rates[0],
        rates[1],
        rates[1] / rates[0]
    );
}

/// Tasks cycling locks at once in the throughput figure.
const CONCURRENT_TASKS: usize = 64;
