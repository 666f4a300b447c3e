//! Managed databases over TLS (feature `tls`, rustls): a private PostgreSQL
//! and a private MariaDB that refuse plain connections, their certificate
//! signed by a CA made for the test. `sslmode=require` (`ssl-mode=REQUIRED`)
//! encrypts, `verify-full` with `sslrootcert` (`VERIFY_IDENTITY` with
//! `ssl-ca`) also checks the certificate, and one from an unknown CA is
//! refused.

use std::path::Path;
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

/// On a server that takes TLS connections only, at `base`, in its URL
/// modes `[plain, encrypted, verified]`: `plain` is refused (the refusal is
/// returned); through `encrypted`, and `verified` checking the certificate
/// against the test CA (given in the URL parameter `ca_parameter`), the
/// tables are made and a lock cycle works; `verified` checking against the
/// public roots, where the test CA is unknown, is refused.
async fn locks_over_tls_only<P: TestTable>(
    connect: impl AsyncFn(&str) -> Result<P, LockError>,
    base: &str,
    [plain, encrypted, verified]: [&str; 3],
    ca_parameter: &str,
    ca: &Path,
) -> String {
    let url = |query: &str| format!("{base}?{query}");
    let refused = refusal(connect(&url(plain))).await;
    assert!(!refused.is_empty(), "a plain connection was let in");
    let with_ca = format!("{verified}&{ca_parameter}={}", ca.display());
    for url in [url(encrypted), url(&with_ca)] {
        let provider = connect(&url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect with {url}: {err}"))
            .on_table(DEFAULT_TABLE_NAME)
            .await;
        lock_cycle(&provider, &url).await;
    }
    let unverified = refusal(connect(&url(verified))).await;
    assert!(
        !unverified.is_empty(),
        "a certificate from an unknown CA was accepted"
    );
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_only() {
    let certificates = TestCertificates::make();
    let server = PostgresServer::start_tls(&certificates);
    let modes = ["sslmode=disable", "sslmode=require", "sslmode=verify-full"];
    let connect = PostgresLockProvider::connect;
    let refused = locks_over_tls_only(
        connect,
        &server.url(),
        modes,
        "sslrootcert",
        &certificates.ca(),
    )
    .await;
    // The server refuses plain connections: what the rest talks to is TLS.
    assert!(refused.contains("no encryption"), "{refused}");
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
    // A plain connection is refused (MariaDB 10.11 answers "access denied"),
    // while the same user over TLS is let in.
    let modes = [
        "ssl-mode=DISABLED",
        "ssl-mode=REQUIRED",
        "ssl-mode=VERIFY_IDENTITY",
    ];
    let connect = MySqlLockProvider::connect;
    locks_over_tls_only(connect, &server.url(), modes, "ssl-ca", &certificates.ca()).await;
}
