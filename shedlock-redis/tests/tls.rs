//! `rediss://`: the provider locks through a TLS-only redis-server whose
//! certificate is signed by a CA made for the test (with the `openssl` CLI),
//! through OpenSSL (feature `tls`) or rustls (feature `tls-rustls`, which
//! wins when both are on: `cargo test --workspace`, where the command asks
//! for it; `cargo test -p shedlock-redis --test tls` uses OpenSSL).

use std::time::Duration;

use redis::{Client, TlsCertificates};
use shedlock_core::LockConfiguration;
use shedlock_redis::RedisLockProvider;
use shedlock_test_support::conformance::{acquire, assert_held, unlock};
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::tls::TestCertificates;

#[tokio::test]
async fn locks_work_over_rediss_with_a_verified_certificate() {
    let certificates = TestCertificates::make();
    let file = |path: std::path::PathBuf| path.to_string_lossy().into_owned();
    let server = RedisServer::start_tls(
        &file(certificates.server_cert()),
        &file(certificates.server_key()),
        &file(certificates.ca()),
    );
    assert!(server.url().starts_with("rediss://"));

    let trusted = TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(certificates.ca()).unwrap()),
    };
    let client = Client::build_with_tls(server.url(), trusted).unwrap();
    let provider = RedisLockProvider::new(client).await.unwrap();
    let config =
        LockConfiguration::new("over-tls", Duration::from_secs(10), Duration::ZERO).unwrap();
    let guard = acquire(&provider, &config).await;
    assert_held(&provider, &config).await;
    unlock(guard).await;

    // Without trusting the test CA, the connection is refused: TLS is verified.
    let untrusted = RedisLockProvider::connect(server.url()).await;
    assert!(
        untrusted.is_err(),
        "an unverified certificate must be rejected"
    );
}
