//! A leader process killed (SIGKILL) while it leads: the candidate in this
//! process takes over once the killed leader's lease has ended, within the
//! lease duration plus one retry period of the kill, with a higher term.
//!
//! The leader is this test binary again, running only `leader_process` (an
//! ignored test that does nothing unless `LEADER_URL_ENV` is set).

#[path = "support/workers.rs"]
mod workers;

use std::time::{Duration, Instant};

use shedlock_core::LeaderElection;
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;
use workers::{connection, push_event, spawn_until_first_event};

const ELECTION: &str = "killed-leader";
const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(200);
/// The leader pushes `leading:<term>` here once it leads.
const EVENTS: &str = "killed-leader-events";
const LEADER_URL_ENV: &str = "SHEDLOCK_KILLED_LEADER_URL";

async fn election(url: &str) -> LeaderElection<RedisLockProvider> {
    let provider = RedisLockProvider::connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect: {err}"));
    LeaderElection::new(provider, ELECTION, LEASE)
        .and_then(|election| election.with_retry_period(RETRY))
        .unwrap_or_else(|err| panic!("election rejected: {err}"))
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_and_a_retry_period() {
    let server = RedisServer::start();
    let never = "the leader never led";
    let (_events, mut leader, event) = spawn_until_first_event(
        server.url(),
        "leader_process",
        LEADER_URL_ENV,
        EVENTS,
        never,
    )
    .await;
    let killed_term: u64 = event
        .strip_prefix("leading:")
        .and_then(|term| term.parse().ok())
        .unwrap_or_else(|| panic!("unexpected event {event:?}"));

    let candidate = election(server.url()).await;
    let campaign = tokio::spawn(async move {
        candidate
            .run(|leadership| async move { (Instant::now(), leadership.term()) })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !campaign.is_finished(),
        "the candidate led beside the leader"
    );
    leader.kill();
    let killed_at = Instant::now();
    let (took_over, term) = tokio::time::timeout(LEASE * 3, campaign)
        .await
        .expect("the candidate never took over")
        .expect("the candidate panicked")
        .expect("the candidate failed");
    let takeover = took_over.duration_since(killed_at);
    println!(
        "killed leader (term {killed_term}) replaced {takeover:?} after SIGKILL (lease {LEASE:?}, \
         retry period {RETRY:?}); new term {term}"
    );
    assert!(term > killed_term, "term {term} is not above {killed_term}");
    assert!(
        takeover <= LEASE + RETRY + Duration::from_millis(300),
        "took over after {takeover:?}"
    );
}

/// The leader: leads until killed, after announcing its term.
#[tokio::test]
#[ignore = "a worker process of a_killed_leader_is_replaced_within_the_lease_and_a_retry_period"]
async fn leader_process() {
    let Ok(url) = std::env::var(LEADER_URL_ENV) else {
        return;
    };
    let mut events = connection(&url).await;
    let election = election(&url).await;
    let _ = election
        .run(|leadership| async move {
            let leading = format!("leading:{}", leadership.term());
            push_event(&mut events, EVENTS, &leading)
                .await
                .unwrap_or_else(|err| panic!("cannot report: {err}"));
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .await;
}
