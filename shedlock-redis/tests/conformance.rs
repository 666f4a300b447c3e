//! The Redis provider passes the provider conformance suite and the
//! lock-kinds suite against a real, private redis-server; every provider is a
//! new connection.

use std::sync::LazyLock;

use shedlock_redis::RedisLockProvider;
use shedlock_test_support::redis::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

async fn provider() -> RedisLockProvider {
    RedisLockProvider::connect(SERVER.url())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

shedlock_test_support::provider_conformance_tests!(provider);

mod kinds {
    use super::provider;

    shedlock_test_support::lock_kinds_conformance_tests!(provider);
}

// The path for servers without `SET NX GET` (before Redis 7), exclusive
// acquisitions by script, runs this whole suite in CI against Redis 6.2
// (`.ci/test`, SHEDLOCK_TEST_REDIS_SERVER).
