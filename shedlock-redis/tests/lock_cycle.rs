//! What a lock cycle costs the server, and that it stays exclusive under
//! contention: the correctness gates of the `lock_cycle` benchmark, as tests
//! (the benchmark only measures).

use std::time::Duration;

use shedlock_core::{LockConfiguration, LockProvider, LockingTaskExecutor};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;

/// `total_reads_processed` of `INFO stats`: one per request a client sent
/// (a pipeline sent in one write counts once).
fn reads(server: &RedisServer) -> u64 {
    let info = server.command("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("total_reads_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has no total_reads_processed: {info}"))
}

#[tokio::test]
async fn a_plain_run_takes_two_round_trips() {
    let server = RedisServer::start();
    let executor =
        LockingTaskExecutor::new(RedisLockProvider::connect(server.url()).await.unwrap());
    let config =
        LockConfiguration::new("two-trips", Duration::from_secs(30), Duration::ZERO).unwrap();
    // Scripts loaded and the connection made, as in a running service.
    executor.execute(&config, async {}).await.unwrap();
    const RUNS: u64 = 50;
    // What reading the count costs by itself (the INFO requests).
    let idle = {
        let first = reads(&server);
        reads(&server) - first
    };
    let before = reads(&server);
    for _ in 0..RUNS {
        assert_eq!(executor.execute(&config, async {}).await.unwrap(), Some(()));
    }
    let during = reads(&server) - before - idle;
    assert_eq!(
        during,
        2 * RUNS,
        "{RUNS} plain runs took {during} round trips, not 2 each"
    );
}

#[tokio::test]
async fn sixty_four_callers_on_one_name_have_exactly_one_winner() {
    let server = RedisServer::start();
    let provider = RedisLockProvider::connect(server.url()).await.unwrap();
    let config =
        LockConfiguration::new("contended", Duration::from_secs(30), Duration::ZERO).unwrap();
    for round in 0..30 {
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let (provider, config) = (provider.clone(), config.clone());
                tokio::spawn(async move { provider.try_lock(&config).await })
            })
            .collect();
        let mut winners = Vec::new();
        for caller in callers {
            if let Some(guard) = caller.await.unwrap().unwrap() {
                winners.push(guard);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        for guard in winners {
            guard.unlock().await.unwrap();
        }
    }
}
