//! The real `shedlock` binary against a real, private redis-server: what it
//! prints, what it changes, its exit codes, and that passwords stay hidden.

mod support;

use shedlock_test_support::conformance::assert_lease_lost;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shedlock_core::{
    LeaderElection, LockAdmin, LockConfiguration, LockError, LockGuard, LockMode, LockProvider,
    LockingTaskExecutor,
};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::free_port;
use shedlock_test_support::redis::RedisServer;
use support::{
    REPORTS, assert_every_report_listed_with_its_last_run, assert_exited_saying,
    assert_last_runs_shown, assert_ticks_shown, assert_unreachable_without_the_password, json_of,
    row_of, run_every_report, run_three_times, run_ticks_with_a_gap, shedlock_command,
    shedlock_command_async, stderr, stdout, succeeded,
};

/// The binary with `args`, on the Redis server `url`.
fn shedlock(url: &str, args: &[&str]) -> Output {
    shedlock_command(&[&["--redis", url], args].concat())
}

async fn connect(url: &str) -> RedisLockProvider {
    RedisLockProvider::connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

/// worker-7's executor on the Redis server `url`, recording its runs.
async fn recording_executor(url: &str) -> LockingTaskExecutor<RedisLockProvider> {
    let provider = connect(url)
        .await
        .with_locked_by("worker-7")
        .with_run_history(true);
    LockingTaskExecutor::new(provider)
}

fn config(name: &str, mode: LockMode) -> LockConfiguration {
    LockConfiguration::new(name, Duration::from_secs(60), Duration::ZERO)
        .and_then(|config| config.with_mode(mode))
        .unwrap_or_else(|err| panic!("{err}"))
}

async fn lock(provider: &RedisLockProvider, name: &str, mode: LockMode) -> LockGuard {
    match provider.try_lock(&config(name, mode)).await {
        Ok(Some(guard)) => guard,
        other => panic!("cannot take '{name}': {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_describe_every_kind_of_lock() {
    let server = RedisServer::start();
    let provider = connect(server.url()).await.with_locked_by("worker-7");
    let _nightly = lock(&provider, "nightly-report", LockMode::Exclusive).await;
    let shared = LockMode::Shared { permits: 2 };
    let _reader_a = lock(&provider, "catalog", shared).await;
    let _reader_b = lock(&provider, "catalog", LockMode::Shared { permits: 1 }).await;
    provider
        .pause("maintenance")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    // A lock written by ShedLock for Java under the same prefix.
    let reply = server
        .command("SET job-lock:default:java-job ADDED:2026-11-22T10:00:00.123Z@java-host PX 60000");
    assert!(reply.starts_with("+OK"), "{reply}");
    // Another prefix is not listed.
    server.command("SET other:default:elsewhere x PX 60000");

    let listed = succeeded(&shedlock(server.url(), &["list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("TIME LEFT"),
        "{listed}"
    );
    let row = |name: &str| row_of(&listed, name);
    assert!(
        row("nightly-report").contains("exclusive") && row("nightly-report").contains("worker-7")
    );
    assert!(row("catalog").contains("2 (3 permits)"), "{listed}");
    assert!(
        row("maintenance").trim_end().ends_with("yes     -"),
        "{listed}"
    );
    assert!(
        row("java-job").contains("java-host") && row("java-job").contains("2026-11-22T10:00:00Z")
    );
    assert!(!listed.contains("elsewhere"), "{listed}");
    assert_eq!(lines.len(), 5, "{listed}");

    let json = succeeded(&shedlock(server.url(), &["--json", "list"]));
    assert!(
        json.trim_start().starts_with('[') && json.trim_end().ends_with(']'),
        "{json}"
    );
    assert!(
        json.contains(r#""name":"catalog""#) && json.contains(r#""permits_held":3"#),
        "{json}"
    );
    assert!(json.contains(r#""locked_by":"java-host""#), "{json}");

    let shown = succeeded(&shedlock(server.url(), &["show", "catalog"]));
    assert!(
        shown.contains("key:       job-lock:default:catalog"),
        "{shown}"
    );
    assert!(
        shown.contains("shared, 2 permits: worker-7") && shown.contains("fencing token"),
        "{shown}"
    );
    let free = succeeded(&shedlock(server.url(), &["show", "never-used"]));
    assert!(free.contains("none (free)"), "{free}");
}

/// The binary run off the async workers, so leaders in this process keep renewing.
async fn shedlock_async(url: &str, args: &[&str]) -> Output {
    shedlock_command_async(&[&["--redis", url], args].concat()).await
}

const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);

/// Sets its flag when dropped: a leader's closure holds one while it leads.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A leader of `name` on its own connection, running in the background: its
/// term once it leads, whether its closure was dropped, and `run`'s result.
struct Candidate {
    term: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
    run: tokio::task::JoinHandle<Result<(), LockError>>,
}

async fn candidate(url: &str, name: &str, identity: &str) -> Candidate {
    let provider = connect(url).await.with_locked_by(identity);
    let election = LeaderElection::new(provider, name, LEASE)
        .and_then(|election| election.with_retry_period(RETRY))
        .unwrap_or_else(|err| panic!("{err}"));
    let (term, dropped) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (seen, flag) = (term.clone(), dropped.clone());
    let run = tokio::spawn(async move {
        election
            .run(|leadership| async move {
                let _flag = DropFlag(flag);
                seen.store(leadership.term(), Ordering::SeqCst);
                std::future::pending::<()>().await;
            })
            .await
    });
    Candidate { term, dropped, run }
}

impl Candidate {
    /// Its term, once it leads (within `within`).
    async fn leads_within(&self, within: Duration) -> u64 {
        let until = Instant::now() + within;
        loop {
            let term = self.term.load(Ordering::SeqCst);
            if term > 0 {
                return term;
            }
            assert!(Instant::now() < until, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_give_a_leaders_term_and_last_renewal() {
    let server = RedisServer::start();
    let leader = candidate(server.url(), "scheduler", "leader-a").await;
    let term = leader.leads_within(Duration::from_secs(5)).await;
    // A plain job beside it: taken once, never renewed.
    let provider = connect(server.url()).await.with_locked_by("worker-7");
    let _nightly = lock(&provider, "nightly-report", LockMode::Exclusive).await;
    // A few renewals.
    tokio::time::sleep(RETRY * 3).await;

    let listed = json_of(&succeeded(
        &shedlock_async(server.url(), &["--json", "list"]).await,
    ));
    let locks = listed.as_array().unwrap_or_else(|| panic!("{listed}"));
    let scheduler = locks
        .iter()
        .find(|lock| lock["name"] == "scheduler")
        .unwrap_or_else(|| panic!("no scheduler: {listed}"));
    let holder = &scheduler["holders"][0];
    assert_eq!(holder["locked_by"], "leader-a", "{listed}");
    assert_eq!(holder["term"], term, "{listed}");
    assert_eq!(holder["fencing_token"], term, "{listed}");
    assert_eq!(holder["kind"], "lease", "{listed}");
    assert_eq!(scheduler["kind"], "lease", "{listed}");
    assert!(
        holder["renewals"].as_u64().is_some_and(|n| n >= 1),
        "{listed}"
    );
    let ago = holder["renewed_ago_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no renewal age: {listed}"));
    assert!(
        u128::from(ago) < (RETRY + Duration::from_millis(300)).as_millis(),
        "the last renewal was {ago} ms ago, retry period {RETRY:?}: {listed}"
    );
    let nightly = locks
        .iter()
        .find(|lock| lock["name"] == "nightly-report")
        .unwrap_or_else(|| panic!("no nightly-report: {listed}"));
    assert_eq!(nightly["kind"], "job", "{listed}");
    assert_eq!(
        nightly["holders"][0]["renewed_ago_ms"],
        Value::Null,
        "{listed}"
    );

    let table = succeeded(&shedlock_async(server.url(), &["list"]).await);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    let row = lines
        .iter()
        .find(|line| line.starts_with("scheduler"))
        .unwrap_or_else(|| panic!("no scheduler row:\n{table}"));
    let cell = |column: &str| {
        let at = header
            .find(column)
            .unwrap_or_else(|| panic!("no {column} column:\n{table}"));
        row[at..]
            .split("  ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(cell("KIND"), "lease", "{table}");
    assert_eq!(cell("TERM"), term.to_string(), "{table}");
    assert!(cell("RENEWED").ends_with("s ago"), "{table}");
    let job_row = lines
        .iter()
        .find(|line| line.starts_with("nightly-report"))
        .unwrap_or_else(|| panic!("no nightly-report row:\n{table}"));
    assert!(
        job_row[header.find("KIND").unwrap_or(0)..].starts_with("job"),
        "{table}"
    );

    let shown = succeeded(&shedlock_async(server.url(), &["show", "scheduler"]).await);
    eprintln!("{table}\n{shown}");
    let expected = format!("kind: lease, term: {term}, last renewal: ");
    let line = shown
        .lines()
        .find(|line| line.contains(&expected))
        .unwrap_or_else(|| panic!("no '{expected}' in:\n{shown}"));
    assert!(line.contains(" ago ("), "{shown}");
    leader.run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_force_makes_a_leader_step_down_and_another_take_over() {
    let server = RedisServer::start();
    let first = candidate(server.url(), "scheduler", "leader-a").await;
    let first_term = first.leads_within(Duration::from_secs(5)).await;
    let second = candidate(server.url(), "scheduler", "leader-b").await;
    tokio::time::sleep(RETRY * 2).await;
    assert_eq!(second.term.load(Ordering::SeqCst), 0, "two leaders at once");

    let unlocked =
        succeeded(&shedlock_async(server.url(), &["unlock", "scheduler", "--force"]).await);
    let unlocked_at = Instant::now();
    assert!(unlocked.contains("1 lease ended"), "{unlocked}");
    // The leader finds its lease gone at its next renewal.
    let outcome = tokio::time::timeout(LEASE, first.run)
        .await
        .unwrap_or_else(|_| panic!("the leader still leads {LEASE:?} after unlock --force"))
        .unwrap_or_else(|err| panic!("the leader's task failed: {err}"));
    let stepped_down_in = unlocked_at.elapsed();
    eprintln!("stepped down {stepped_down_in:?} after unlock --force");
    assert_lease_lost(&outcome);
    assert!(
        first.dropped.load(Ordering::SeqCst),
        "the leader's closure was not dropped"
    );
    assert!(
        stepped_down_in < RETRY + Duration::from_millis(600),
        "the leader stepped down {stepped_down_in:?} after unlock --force (retry period {RETRY:?})"
    );
    let second_term = second.leads_within(Duration::from_secs(5)).await;
    assert!(
        second_term > first_term,
        "the next leader's term {second_term} is not above {first_term}"
    );
    tokio::time::sleep(RETRY * 2).await;
    let shown = json_of(&succeeded(
        &shedlock_async(server.url(), &["--json", "show", "scheduler"]).await,
    ));
    assert_eq!(shown["holders"][0]["locked_by"], "leader-b", "{shown}");
    assert_eq!(shown["holders"][0]["term"], second_term, "{shown}");
    second.run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_capacity_change_what_services_see() {
    let server = RedisServer::start();
    let provider = connect(server.url()).await;
    let job = config("exports", LockMode::Shared { permits: 3 });

    succeeded(&shedlock(server.url(), &["capacity", "exports", "6"]));
    assert_eq!(
        provider
            .lock_state("exports")
            .await
            .map(|s| s.capacity)
            .ok(),
        Some(Some(6))
    );

    let paused = succeeded(&shedlock(server.url(), &["--json", "pause", "exports"]));
    assert!(
        paused.contains(r#""action":"paused""#) && paused.contains(r#""paused":true"#),
        "{paused}"
    );
    assert!(
        matches!(provider.try_lock(&job).await, Ok(None)),
        "a paused lock was taken"
    );

    let resumed = succeeded(&shedlock(server.url(), &["resume", "exports"]));
    assert!(
        resumed.contains("resumed") && resumed.contains("capacity:  6"),
        "{resumed}"
    );
    let first = provider.try_lock(&job).await.ok().flatten();
    let second = provider.try_lock(&job).await.ok().flatten();
    assert!(
        first.is_some() && second.is_some(),
        "capacity 6 admits two holders of 3"
    );
    assert!(matches!(provider.try_lock(&job).await, Ok(None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_needs_force_and_then_ends_every_lease() {
    let server = RedisServer::start();
    let provider = connect(server.url()).await;
    let mut held = lock(&provider, "stuck-job", LockMode::Exclusive).await;

    let unforced = ["unlock", "stuck-job"];
    let refused = shedlock(server.url(), &unforced);
    assert_exited_saying(&unforced, &refused, 2, "--force");
    assert!(
        provider
            .lock_state("stuck-job")
            .await
            .is_ok_and(|s| s.is_locked())
    );

    let unlocked = succeeded(&shedlock(
        server.url(),
        &["--json", "unlock", "stuck-job", "--force"],
    ));
    assert!(unlocked.contains(r#""released":1"#), "{unlocked}");
    assert!(matches!(
        held.extend(Duration::from_secs(60), Duration::ZERO).await,
        Ok(false)
    ));
    let again = succeeded(&shedlock(server.url(), &["unlock", "stuck-job", "--force"]));
    assert!(again.contains("nobody held it"), "{again}");
}

#[test]
fn an_unreachable_server_exits_1_without_printing_the_password() {
    let url = format!("redis://:s3cret-pass@127.0.0.1:{}", free_port());
    assert_unreachable_without_the_password(&shedlock(&url, &["list"]));
}

#[test]
fn a_password_protected_server_works_and_the_password_stays_hidden() {
    let server = RedisServer::start_with_password("s3cret-pass");
    let port = server.port();
    let listed = succeeded(&shedlock(server.url(), &["list"]));
    assert!(listed.contains("no locks"), "{listed}");
    let wrong = shedlock(&format!("redis://:wrong-pass@127.0.0.1:{port}"), &["list"]);
    assert_eq!(wrong.status.code(), Some(1));
    let all = format!("{}{}", stdout(&wrong), stderr(&wrong));
    assert!(
        !all.contains("wrong-pass"),
        "the password was printed: {all}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .env("SHEDLOCK_REDIS_URL", server.url())
        .arg("--help")
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        !stdout(&help).contains("s3cret"),
        "--help shows the URL from the environment"
    );
}

#[test]
fn the_url_can_come_from_the_environment() {
    let server = RedisServer::start();
    let output = Command::new(env!("CARGO_BIN_EXE_shedlock"))
        .env("SHEDLOCK_REDIS_URL", server.url())
        .args(["show", "anything"])
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(succeeded(&output).contains("lock:      anything"));
}

#[test]
fn usage_mistakes_exit_2() {
    let long = "n".repeat(1025);
    for args in [
        &["capacity", "exports", "many"][..],
        &["frobnicate"][..],
        &["show"][..],
        // Names the library refuses, checked before connecting.
        &["show", ""][..],
        &["pause", "   "][..],
        &["resume", ""][..],
        &["capacity", "", "2"][..],
        &["unlock", "", "--force"][..],
        &["show", &long][..],
        &["prune"][..],
        &["prune", "--unused-for", "a while"][..],
    ] {
        let output = shedlock("redis://127.0.0.1:1", args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn store_takes_a_redis_url_and_prune_has_nothing_to_delete() {
    let server = RedisServer::start();
    let output = shedlock_command(&["--store", server.url(), "prune", "--unused-for", "30d"]);
    assert!(
        succeeded(&output).contains("nothing to prune on Redis"),
        "{}",
        stdout(&output)
    );
    let json = json_of(&succeeded(&shedlock(
        server.url(),
        &["--json", "prune", "--unused-for", "30d"],
    )));
    assert_eq!(json["pruned"], 0, "{json}");
    assert_eq!(json["unused_for"], "30days", "{json}");
    assert_eq!(json["table"], Value::Null, "{json}");
}

/// `history`, `show` and `list` give the last runs; `show` the last tick
/// claimed and the ticks no replica ran, which `history` lists as one
/// `missed` entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_show_and_list_give_the_last_runs_and_ticks() {
    let server = RedisServer::start();
    let executor = recording_executor(server.url()).await;
    run_three_times(&executor, &config("nightly", LockMode::Exclusive)).await;
    run_ticks_with_a_gap(&executor, &config("ticking", LockMode::Exclusive)).await;

    assert_last_runs_shown(async |args| shedlock(server.url(), args)).await;
    assert_ticks_shown(async |args| shedlock(server.url(), args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_reads_last_runs_in_a_bounded_number_of_round_trips() {
    let server = RedisServer::start();
    let executor = recording_executor(server.url()).await;
    run_every_report(&executor, |name| config(name, LockMode::Exclusive)).await;
    let proxy = shedlock_test_support::proxy::FaultProxy::start_in_front_of(server.url()).await;

    let before = proxy.forwarded_to_server();
    let list = succeeded(&shedlock_async(&proxy.route(server.url()), &["list"]).await);
    let sent = proxy.forwarded_to_server() - before;

    assert_every_report_listed_with_its_last_run(&list);
    // The connection's hello, a SCAN or two, one pipeline of states and one
    // of last runs; a read per name would be 300 more.
    assert!(
        sent <= 20,
        "list of {REPORTS} locks sent {sent} requests to the server"
    );
}
