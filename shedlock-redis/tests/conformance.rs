//! The Redis provider passes the provider conformance suite against a real,
//! private redis-server; every provider is a new connection. The suite runs
//! twice: as shipped (plain exclusive acquisitions in two commands) and with
//! every acquisition by script.

use std::sync::LazyLock;

use shedlock_redis::RedisLockProvider;
use shedlock_redis::testkit::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

async fn provider() -> RedisLockProvider {
    RedisLockProvider::connect(SERVER.url())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

shedlock_core::provider_conformance_tests!(provider);

mod kinds {
    use super::provider;

    shedlock_core::lock_kinds_conformance_tests!(provider);
}

/// Exclusive acquisitions by script, as on a server without `SET NX GET`
/// (before Redis 7): the path a provider falls back to.
mod scripted {
    use super::SERVER;
    use shedlock_redis::RedisLockProvider;

    async fn provider() -> RedisLockProvider {
        RedisLockProvider::connect(SERVER.url())
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
            .with_scripted_acquisitions()
    }

    shedlock_core::provider_conformance_tests!(provider);
}
