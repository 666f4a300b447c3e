//! Leader leases on Redis, standalone and Cluster: the shared cases, the
//! lease taken from the leader as `shedlock unlock --force` does.

use std::sync::LazyLock;

use shedlock_core::LockAdmin;
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::leader;
use shedlock_test_support::redis::{RedisCluster, RedisServer};

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);
static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(RedisCluster::start);

async fn standalone() -> RedisLockProvider {
    RedisLockProvider::connect(SERVER.url()).await.unwrap()
}

async fn cluster() -> RedisLockProvider {
    let urls = CLUSTER.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisLockProvider::connect_cluster(&nodes).await.unwrap()
}

#[tokio::test]
async fn one_leader_at_a_time_and_terms_rise() {
    leader::one_leader_at_a_time_and_terms_rise(standalone).await;
    leader::one_leader_at_a_time_and_terms_rise(cluster).await;
}

#[tokio::test]
async fn stepping_down_hands_over_at_once() {
    leader::stepping_down_hands_over_at_once(standalone).await;
    leader::stepping_down_hands_over_at_once(cluster).await;
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops() {
    leader::a_leader_that_loses_its_lease_stops(standalone, |name| async move {
        assert_eq!(standalone().await.force_release(&name).await.unwrap(), 1);
    })
    .await;
    leader::a_leader_that_loses_its_lease_stops(cluster, |name| async move {
        assert_eq!(cluster().await.force_release(&name).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_observer_sees_each_new_leader() {
    leader::an_observer_sees_each_new_leader(standalone).await;
    leader::an_observer_sees_each_new_leader(cluster).await;
}
