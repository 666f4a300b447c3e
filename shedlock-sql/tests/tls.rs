//! Managed databases over TLS (feature `tls`, rustls): a private PostgreSQL
//! and a private MariaDB that refuse plain connections, their certificate
//! signed by a CA made for the test. `sslmode=require` (`ssl-mode=REQUIRED`)
//! encrypts, `verify-full` with `sslrootcert` (`VERIFY_IDENTITY` with
//! `ssl-ca`) also checks the certificate, and one from an unknown CA is
//! refused.

use std::time::Duration;

use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_sql::{DEFAULT_TABLE_NAME, MySqlLockProvider, PostgresLockProvider};
use shedlock_test_support::sql::{MariaDbServer, PostgresServer, TestTable};
use shedlock_test_support::tls::TestCertificates;

/// The errors of connecting to `url`, with their causes; empty when it connected.
async fn refusal<P>(connect: impl std::future::Future<Output = Result<P, LockError>>) -> String {
    connect
        .await
        .err()
        .map(|err| shedlock_test_support::error_chain(&err))
        .unwrap_or_default()
}

/// A lock taken, refused to a second caller, and given back.
async fn lock_cycle(provider: &dyn LockProvider, url: &str) {
    let config = LockConfiguration::new("over-tls", Duration::from_secs(10), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"));
    let guard = match provider.try_lock(&config).await {
        Ok(Some(guard)) => guard,
        other => panic!("no lock over TLS ({url}): {other:?}"),
    };
    assert!(matches!(provider.try_lock(&config).await, Ok(None)));
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
}

/// Through each of `urls` (TLS, the second also checking the certificate
/// against the test CA), the tables are made and a lock cycle works;
/// `unknown_ca`, checking against the public roots where the test CA is
/// unknown, is refused.
async fn locks_over_tls_with_the_ca_checked<P: TestTable>(
    connect: impl AsyncFn(&str) -> Result<P, LockError>,
    urls: [String; 2],
    unknown_ca: String,
) {
    for url in urls {
        let provider = connect(&url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect with {url}: {err}"))
            .on_table(DEFAULT_TABLE_NAME)
            .await;
        lock_cycle(&provider, &url).await;
    }
    let unverified = refusal(connect(&unknown_ca)).await;
    assert!(
        !unverified.is_empty(),
        "a certificate from an unknown CA was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_only() {
    let certificates = TestCertificates::make();
    let server = PostgresServer::start_tls(&certificates);
    let ca = certificates.ca();

    let url = |query: &str| format!("{}?{query}", server.url());

    // The server refuses plain connections: what the rest talks to is TLS.
    let refused = refusal(PostgresLockProvider::connect(&url("sslmode=disable"))).await;
    assert!(refused.contains("no encryption"), "{refused}");

    locks_over_tls_with_the_ca_checked(
        PostgresLockProvider::connect,
        [
            url("sslmode=require"),
            url(&format!("sslmode=verify-full&sslrootcert={}", ca.display())),
        ],
        url("sslmode=verify-full"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_over_tls_only() {
    let certificates = TestCertificates::make();
    let option = |name: &str, path: std::path::PathBuf| format!("--{name}={}", path.display());
    let server = MariaDbServer::start(&[
        &option("ssl-cert", certificates.server_cert()),
        &option("ssl-key", certificates.server_key()),
        "--require-secure-transport=ON",
    ]);
    let ca = certificates.ca();
    let url = |query: &str| format!("{}?{query}", server.url());

    // Refused (MariaDB 10.11 answers "access denied"), while the same user
    // over TLS below is let in.
    let refused = refusal(MySqlLockProvider::connect(&url("ssl-mode=DISABLED"))).await;
    assert!(!refused.is_empty(), "a plain connection was let in");

    locks_over_tls_with_the_ca_checked(
        MySqlLockProvider::connect,
        [
            url("ssl-mode=REQUIRED"),
            url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display())),
        ],
        url("ssl-mode=VERIFY_IDENTITY"),
    )
    .await;
}
