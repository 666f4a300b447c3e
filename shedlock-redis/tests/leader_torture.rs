//! Leader leases under fire: four processes campaign on one name while the
//! test kills the leader (SIGKILL) again and again and restarts Redis once.
//! Each leader writes a heartbeat `term pid ms` to a shared file every 25 ms
//! while it leads. Afterwards: terms rise in the order leaders started; no
//! two terms' heartbeats overlap, except that a Redis restart (which forgets
//! every lease) may let a new leader in before the old one's next renewal,
//! within one retry period of the restart; and leaders keep coming back.
//!
//! Workers are this test binary again, running only `campaigner`.

#[path = "support/workers.rs"]
mod workers;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use shedlock_core::LeaderElection;
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::{Worker, now_ms};
use workers::{new_records_file, owned_server};

const LEASE: Duration = Duration::from_millis(1_500);
const RETRY: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(25);
const WORKERS: usize = 4;
const KILLS: usize = 4;

const URL_ENV: &str = "SHEDLOCK_LEADER_TORTURE_URL";
const FILE_ENV: &str = "SHEDLOCK_LEADER_TORTURE_FILE";

/// One leader's term, from its heartbeats.
#[derive(Debug)]
struct Term {
    term: u64,
    pid: u32,
    first_ms: u64,
    last_ms: u64,
}

fn terms(file: &std::path::Path) -> Vec<Term> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut terms: BTreeMap<u64, Term> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        let [term, pid, ms] = fields[..] else {
            continue;
        };
        let entry = terms.entry(term).or_insert(Term {
            term,
            pid: u32::try_from(pid).unwrap_or(0),
            first_ms: ms,
            last_ms: ms,
        });
        entry.first_ms = entry.first_ms.min(ms);
        entry.last_ms = entry.last_ms.max(ms);
    }
    let mut terms: Vec<Term> = terms.into_values().collect();
    terms.sort_by_key(|term| term.first_ms);
    terms
}

#[tokio::test]
async fn leaders_killed_and_a_store_restart_never_overlap_and_terms_rise() {
    let mut server = owned_server();
    let (file, path) = new_records_file("leader-torture");
    let url = server.url().to_owned();
    let spawn = || Worker::spawn("campaigner", &[(URL_ENV, &url), (FILE_ENV, &path)]);
    let mut workers: Vec<Worker> = (0..WORKERS).map(|_| spawn()).collect();
    let mut restart_ms = None;
    for round in 0..KILLS {
        // Longer than a killed leader's lease, so someone leads again.
        tokio::time::sleep(LEASE + RETRY * 3).await;
        if round == KILLS / 2 {
            restart_ms = Some(now_ms());
            server.restart();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Kill whoever leads now (the last heartbeat's process) and start a
        // new process in its place.
        let Some(leader) = terms(&file)
            .last()
            .filter(|term| term.last_ms + 200 >= now_ms())
            .map(|term| term.pid)
        else {
            continue;
        };
        if let Some(index) = workers.iter().position(|worker| worker.pid() == leader) {
            workers[index].kill();
            workers[index] = spawn();
        }
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for worker in &mut workers {
        worker.kill();
    }

    let terms = terms(&file);
    let _ = std::fs::remove_file(&file);
    println!("leader torture: {} terms: {terms:?}", terms.len());
    assert!(terms.len() >= KILLS, "too few leaders: {terms:?}");
    for pair in terms.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        assert!(
            later.term > earlier.term,
            "a later leader's term is not above the earlier one's: {earlier:?}, {later:?}"
        );
        if later.first_ms <= earlier.last_ms {
            // Only a store that forgot the lease lets a second leader in, and
            // the first stops at its next renewal.
            let restart = restart_ms.unwrap_or(u64::MAX);
            let window = u64::try_from((RETRY + HEARTBEAT * 2).as_millis()).unwrap_or(0);
            assert!(
                later.first_ms >= restart && earlier.last_ms <= later.first_ms + window,
                "two leaders at once outside the restart window: {earlier:?}, {later:?}"
            );
        }
    }
}

/// One campaigning process: leads (writing heartbeats) until killed; after
/// losing leadership (the store restarted), campaigns again.
#[tokio::test]
#[ignore = "a worker process of leaders_killed_and_a_store_restart_never_overlap_and_terms_rise"]
async fn campaigner() {
    let (Ok(url), Ok(file)) = (std::env::var(URL_ENV), std::env::var(FILE_ENV)) else {
        return;
    };
    let provider = loop {
        match RedisLockProvider::connect(&url).await {
            Ok(provider) => break provider,
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    };
    let election = LeaderElection::new(provider, "torture-leader", LEASE)
        .and_then(|election| election.with_retry_period(RETRY))
        .unwrap_or_else(|err| panic!("election rejected: {err}"));
    let pid = std::process::id();
    let file = &file;
    let deadline = now_ms() + 60_000;
    while now_ms() < deadline {
        let _ = election
            .run(|leadership| async move {
                let mut out = std::fs::OpenOptions::new()
                    .append(true)
                    .open(file)
                    .unwrap_or_else(|err| panic!("cannot open {file}: {err}"));
                loop {
                    if leadership.is_lost() {
                        return;
                    }
                    let line = format!("{} {pid} {}\n", leadership.term(), now_ms());
                    let _ = out.write_all(line.as_bytes());
                    tokio::time::sleep(HEARTBEAT).await;
                }
            })
            .await;
    }
}
