//! Redis Sentinel: the conformance suite through a provider that finds its
//! master through a private Sentinel (one master, one Sentinel).

use std::sync::LazyLock;
use std::time::Duration;

use shedlock_core::LockConfiguration;
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::conformance::{acquire, unlock};
use shedlock_test_support::redis::{RedisSentinel, RedisServer};

const MASTER_NAME: &str = "shedlock-master";

static MASTER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);
static SENTINEL: LazyLock<RedisSentinel> =
    LazyLock::new(|| RedisSentinel::start(&MASTER, MASTER_NAME));

async fn provider() -> RedisLockProvider {
    RedisLockProvider::connect_sentinel(&[SENTINEL.url()], MASTER_NAME)
        .await
        .unwrap_or_else(|err| panic!("cannot connect through the test Sentinel: {err}"))
}

shedlock_test_support::provider_conformance_tests!(provider);

#[tokio::test]
async fn locks_land_on_the_master_sentinel_names() {
    let provider = provider().await;
    let config =
        LockConfiguration::new("via-sentinel", Duration::from_secs(10), Duration::ZERO).unwrap();
    let guard = acquire(&provider, &config).await;
    assert!(MASTER.exists("job-lock:default:via-sentinel"));
    unlock(guard).await;
    assert!(!MASTER.exists("job-lock:default:via-sentinel"));
}

#[tokio::test]
async fn an_unknown_master_name_is_a_clear_error() {
    let err = RedisLockProvider::connect_sentinel(&[SENTINEL.url()], "no-such-master")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-master"), "{err}");
}
