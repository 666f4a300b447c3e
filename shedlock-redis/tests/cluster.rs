//! Redis Cluster: the conformance suite through the cluster client on a
//! private three-master cluster, and every key of a lock in one slot.

use std::sync::LazyLock;
use std::time::Duration;

use shedlock_core::{LockConfiguration, LockProvider};
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisCluster;

static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(RedisCluster::start);

async fn provider() -> RedisLockProvider {
    let urls = CLUSTER.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisLockProvider::connect_cluster(&nodes)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test cluster: {err}"))
}

shedlock_test_support::provider_conformance_tests!(provider);

fn keyslot(key: &str) -> String {
    let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
    CLUSTER
        .node(0)
        .command(&format!("CLUSTER KEYSLOT \"{escaped}\""))
}

#[tokio::test]
async fn a_locks_keys_share_one_slot_whatever_its_name() {
    let provider = provider().await;
    for name in ["plain", "with{tag}", "}{", "a}b", "{", "{}", "ünïcode:name"] {
        let config = LockConfiguration::new(name, Duration::from_secs(5), Duration::ZERO).unwrap();
        let guard = provider
            .try_lock(&config)
            .await
            .unwrap()
            .expect("free lock");
        let lock_key = provider.lock_key(name);
        let fence_key = provider.fence_key(name);
        assert_eq!(keyslot(&lock_key), keyslot(&fence_key), "name {name:?}");
        guard.unlock().await.unwrap();
    }
}

mod kinds {
    use super::provider;

    shedlock_test_support::lock_kinds_conformance_tests!(provider);
}

#[tokio::test]
async fn shared_holders_and_settings_live_in_the_locks_slot() {
    use shedlock_core::LockAdmin;
    let provider = provider().await;
    for name in ["plain-kinds", "tenant-{t1}", "a}b-kinds", "x:holders"] {
        let config = LockConfiguration::new(name, Duration::from_secs(5), Duration::ZERO)
            .and_then(|config| config.with_permits(2))
            .unwrap();
        let guard = provider
            .try_lock(&config)
            .await
            .unwrap()
            .expect("free lock");
        provider.set_capacity(name, 4).await.unwrap();
        let state = provider.lock_state(name).await.unwrap();
        assert_eq!(
            (state.holders.len(), state.capacity),
            (1, Some(4)),
            "{name}"
        );
        let listed = provider.list_locks().await.unwrap();
        assert!(
            listed.iter().any(|lock| lock.name == name),
            "{name} not listed: {listed:?}"
        );
        guard.unlock().await.unwrap();
    }
}
