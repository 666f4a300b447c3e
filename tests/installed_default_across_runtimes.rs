//! The installed default Redis provider, made once on a runtime that is gone
//! by the time the jobs run, serves `#[scheduler_lock]` functions from
//! several `#[tokio::test]`s, each on a runtime of its own (as a service that
//! rebuilds its runtime, or a test suite sharing one provider, does).

use std::sync::{LazyLock, Once};
use std::time::Duration;

use shedlock::redis::RedisLockProvider;
use shedlock::{SchedulerLock, scheduler_lock};
use shedlock_test_support::conformance::assert_ran_with;
use shedlock_test_support::redis::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

/// Installs the default provider from a runtime that is dropped right after.
fn install_from_a_dropped_runtime() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let url = SERVER.url().to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let provider = RedisLockProvider::connect(&url).await.unwrap();
                SchedulerLock::builder(provider)
                    .default_lock_at_most_for(Duration::from_secs(10))
                    .install()
                    .unwrap();
                // Its connection is made and used on this runtime.
                assert_eq!(tick("warm-up").await.unwrap(), Some("warm-up"));
            });
        })
        .join()
        .unwrap();
    });
}

#[scheduler_lock(name = "runtimes-{test}")]
async fn tick(test: &'static str) -> &'static str {
    test
}

async fn every_tick_runs(test: &'static str) {
    install_from_a_dropped_runtime();
    for round in 0..3 {
        let ran = tick(test).await;
        assert_ran_with(&ran, test, format_args!("{test}, round {round}"));
    }
}

#[tokio::test]
async fn first_test_runtime_runs_its_jobs() {
    every_tick_runs("first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_test_runtime_runs_its_jobs() {
    every_tick_runs("second").await;
}

#[tokio::test]
async fn third_test_runtime_runs_its_jobs() {
    every_tick_runs("third").await;
}
