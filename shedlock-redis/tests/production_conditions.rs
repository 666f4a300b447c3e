//! What a service meets every week rather than in a fault lab: connections
//! that the server (or a load balancer, a NAT table) closed while idle,
//! `CLIENT KILL`, and a provider used from a runtime other than the one that
//! made it. Every lock operation after such an event works, transparently.

use shedlock_test_support::runtimes::{lock_cycles_work, made_on_a_dropped_runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shedlock_core::{
    ExecutionOptions, LockAdmin, LockConfiguration, LockProvider, LockingTaskExecutor,
    is_lease_lost,
};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::conformance::{
    assert_ran_with, assert_release_published, held_and_watched, unlock,
};
use shedlock_test_support::redis::{RedisCluster, RedisSentinel, RedisServer};

async fn connect(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url()).await.unwrap()
}

fn config(name: &str, lock_at_most_for: Duration) -> LockConfiguration {
    LockConfiguration::new(name, lock_at_most_for, Duration::ZERO).unwrap()
}

/// Closes every connection of the given kind (`normal`, `pubsub`) the way an
/// idle timeout or a load balancer does, and says how many it closed.
fn kill_clients(server: &RedisServer, kind: &str) -> u32 {
    let reply = server.command(&format!("CLIENT KILL TYPE {kind}"));
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("CLIENT KILL answered {reply:?}"))
}

#[tokio::test]
async fn every_tick_runs_when_the_server_closes_idle_connections() {
    let server = RedisServer::start();
    assert!(server.command("CONFIG SET timeout 1").starts_with("+OK"));
    let executor = LockingTaskExecutor::new(connect(&server).await);
    let config = config("idle-ticks", Duration::from_secs(10));
    for tick in 0..4 {
        // Longer than the server's idle timeout (checked about every 100 ms).
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        let started = std::time::Instant::now();
        let ran = executor.execute(&config, async { tick }).await;
        println!("idle timeout: tick {tick} took {:?}", started.elapsed());
        assert_ran_with(&ran, tick, format_args!("tick {tick} after an idle period"));
    }
}

#[tokio::test]
async fn client_kill_between_ticks_does_not_fail_the_next_tick() {
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let config = config("killed-between-ticks", Duration::from_secs(10));
    for tick in 0..5 {
        let started = std::time::Instant::now();
        let guard = provider.try_lock(&config).await;
        println!(
            "CLIENT KILL: acquisition {tick} took {:?}",
            started.elapsed()
        );
        let guard = guard
            .unwrap_or_else(|err| panic!("tick {tick}: {err}"))
            .unwrap_or_else(|| panic!("tick {tick}: the free lock was not taken"));
        assert!(kill_clients(&server, "normal") >= 1);
        // Release and extension after a kill work too.
        let mut guard = guard;
        assert!(
            guard
                .extend(Duration::from_secs(10), Duration::ZERO)
                .await
                .unwrap_or_else(|err| panic!("tick {tick}: extension after a kill: {err}"))
        );
        kill_clients(&server, "normal");
        guard
            .unlock()
            .await
            .unwrap_or_else(|err| panic!("tick {tick}: release after a kill: {err}"));
        kill_clients(&server, "normal");
    }
    assert!(
        !server.exists("job-lock:default:killed-between-ticks"),
        "the lock was left behind"
    );
}

#[tokio::test]
async fn a_waiter_whose_subscription_was_killed_is_still_woken_by_the_release() {
    let server = RedisServer::start();
    let (holder, waiter) = (connect(&server).await, connect(&server).await);
    let config = config("killed-waiter", Duration::from_secs(30));
    let (guard, mut releases) = held_and_watched(&holder, &waiter, &config).await;
    assert!(
        kill_clients(&server, "pubsub") >= 1,
        "no subscription to kill"
    );
    kill_clients(&server, "normal");
    // Give the subscriber time to come back before the release is published.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    unlock(guard).await;
    let missed = "the release was not delivered after the subscription was killed";
    assert_release_published(&mut releases, missed).await;
}

#[tokio::test]
async fn a_waiting_job_runs_after_its_connections_are_killed_mid_wait() {
    let server = RedisServer::start();
    let (holder, waiter) = (connect(&server).await, connect(&server).await);
    let config = config("killed-mid-wait", Duration::from_secs(30));
    let guard = holder.try_lock(&config).await.unwrap().unwrap();
    let executor = LockingTaskExecutor::new(waiter);
    let options = ExecutionOptions::new().wait_for(Duration::from_secs(20));
    let job = executor.execute_with(&config, options, async { "ran" });
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill_clients(&server, "pubsub");
        kill_clients(&server, "normal");
        tokio::time::sleep(Duration::from_millis(500)).await;
        guard.unlock().await.unwrap();
    };
    let (ran, ()) = tokio::join!(job, chaos);
    assert_eq!(ran.unwrap(), Some("ran"));
}

#[tokio::test]
async fn keep_alive_survives_connections_killed_during_the_job() {
    let server = RedisServer::start();
    let executor = LockingTaskExecutor::new(connect(&server).await);
    let config = config("killed-keep-alive", Duration::from_millis(1_500));
    let options = ExecutionOptions::new().keep_alive(true);
    let job = executor.execute_with(&config, options, async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            kill_clients(&server, "normal");
        }
        is_lease_lost()
    });
    let lost = job.await.unwrap().expect("the free lock was not taken");
    assert!(
        !lost,
        "keep-alive lost the lease after its connection was killed"
    );
}

#[tokio::test]
async fn a_standalone_provider_works_after_the_runtime_that_made_it_is_gone() {
    let server = RedisServer::start();
    let url = server.url().to_owned();
    let provider =
        made_on_a_dropped_runtime(async move { RedisLockProvider::connect(&url).await.unwrap() });
    lock_cycles_work(&provider, "standalone-other-runtime").await;
}

#[tokio::test]
async fn a_cluster_provider_works_after_the_runtime_that_made_it_is_gone() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let provider = made_on_a_dropped_runtime(async move {
        let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
        RedisLockProvider::connect_cluster(&nodes).await.unwrap()
    });
    lock_cycles_work(&provider, "cluster-other-runtime").await;
}

#[tokio::test]
async fn a_sentinel_provider_works_after_the_runtime_that_made_it_is_gone() {
    let master = RedisServer::start();
    let sentinel = RedisSentinel::start(&master, "runtime-master");
    let url = sentinel.url().to_owned();
    let provider = made_on_a_dropped_runtime(async move {
        RedisLockProvider::connect_sentinel(&[url.as_str()], "runtime-master")
            .await
            .unwrap()
    });
    lock_cycles_work(&provider, "sentinel-other-runtime").await;
}

#[tokio::test]
async fn cluster_and_sentinel_connections_killed_between_ticks_do_not_fail_the_next_tick() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let on_cluster = RedisLockProvider::connect_cluster(&nodes).await.unwrap();
    let master = RedisServer::start();
    let sentinel = RedisSentinel::start(&master, "killed-master");
    let on_sentinel = RedisLockProvider::connect_sentinel(&[sentinel.url()], "killed-master")
        .await
        .unwrap();
    let kills = Arc::new(AtomicU32::new(0));
    for tick in 0..3 {
        lock_cycles_work(&on_cluster, &format!("cluster-killed-{tick}")).await;
        lock_cycles_work(&on_sentinel, &format!("sentinel-killed-{tick}")).await;
        for node in 0..3 {
            kills.fetch_add(
                kill_clients(cluster.node(node), "normal"),
                Ordering::Relaxed,
            );
        }
        kills.fetch_add(kill_clients(&master, "normal"), Ordering::Relaxed);
    }
    assert!(kills.load(Ordering::Relaxed) >= 3, "nothing was killed");
}

#[tokio::test]
async fn operator_commands_survive_connections_killed_between_them() {
    let server = RedisServer::start();
    let provider = connect(&server).await;
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let on_cluster = RedisLockProvider::connect_cluster(&nodes).await.unwrap();
    let config = config("operated", Duration::from_secs(30));
    for (admin, nodes) in [
        (&provider, vec![&server]),
        (
            &on_cluster,
            vec![cluster.node(0), cluster.node(1), cluster.node(2)],
        ),
    ] {
        let kill = || {
            for node in &nodes {
                kill_clients(node, "normal");
            }
        };
        let guard = admin.try_lock(&config).await.unwrap().unwrap();
        kill();
        let state = admin.lock_state("operated").await.unwrap();
        assert!(state.is_locked());
        kill();
        assert!(
            admin
                .list_locks()
                .await
                .unwrap()
                .iter()
                .any(|lock| lock.is_locked())
        );
        kill();
        admin.pause("operated").await.unwrap();
        kill();
        admin.resume("operated").await.unwrap();
        kill();
        assert_eq!(admin.force_release("operated").await.unwrap(), 1);
        drop(guard);
    }
}
