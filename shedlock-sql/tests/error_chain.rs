//! A store error's causes are its `source()` chain only: the message names
//! the failure's kind, and `{:#}` (or any walk of `source()`) prints each
//! cause once, for errors from real servers.

use std::error::Error;
use std::time::Duration;

use shedlock_core::{LockConfiguration, LockError, LockProvider};
use shedlock_sql::PostgresLockProvider;
use shedlock_test_support::sql::{TestTable, connect_mysql, connect_postgres};

/// Every layer's message, as `{:#}` of anyhow prints them joined by ": ".
fn layers(err: &LockError) -> Vec<String> {
    std::iter::successors(Some(err as &dyn Error), |e| (*e).source())
        .map(ToString::to_string)
        .collect()
}

/// Asserts that `err` is a store error with a cause, and that each cause
/// is printed once in the whole chain; returns the chain as `{:#}` prints it.
fn assert_each_cause_once(err: LockError) -> String {
    assert!(matches!(err, LockError::Store { .. }), "{err:?}");
    let layers = layers(&err);
    assert!(layers.len() >= 2, "a store error with no cause: {err:?}");
    let printed = format!("{:#}", anyhow::Error::new(err));
    assert_eq!(printed, layers.join(": "));
    for cause in &layers[1..] {
        assert_eq!(
            printed.matches(cause.as_str()).count(),
            1,
            "the cause {cause:?} is printed more than once: {printed}"
        );
    }
    eprintln!("{printed}");
    printed
}

fn config(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, Duration::from_secs(10), Duration::ZERO)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// An acquisition fails (here: the pool is closed).
async fn statement_refused<P: LockProvider>(provider: P) -> LockError {
    match provider.try_lock(&config("error-chain")).await {
        Err(err) => err,
        Ok(guard) => panic!("a lock on a closed pool was answered: {guard:?}"),
    }
}

/// A table in a schema that does not exist.
const IN_A_MISSING_SCHEMA: &str = "no_such_schema.shedlock";

/// What the refused creation of a table in a schema that does not exist
/// (a statement failing on the server) prints, each cause once.
fn creation_refused(created: Result<(), LockError>) -> String {
    match created {
        Err(err) => assert_each_cause_once(err),
        Ok(()) => panic!("a table in a missing schema was created"),
    }
}

#[tokio::test]
async fn a_statement_refused_by_postgres_prints_each_cause_once() {
    let provider = connect_postgres().await.table_named(IN_A_MISSING_SCHEMA);
    let printed = creation_refused(provider.create_table_if_missing().await);
    // The kind (the SQLSTATE) in the message, the server's words once, in the source.
    assert!(printed.contains("answered with error 3F000"), "{printed}");
    assert_eq!(printed.matches("does not exist").count(), 1, "{printed}");
}

#[tokio::test]
async fn a_statement_refused_by_mariadb_prints_each_cause_once() {
    let provider = connect_mysql().await.table_named(IN_A_MISSING_SCHEMA);
    let printed = creation_refused(provider.create_table_if_missing().await);
    assert!(printed.contains("answered with error 42000"), "{printed}");
}

#[tokio::test]
async fn a_closed_pool_prints_each_cause_once() {
    let provider = connect_postgres().await.with_fencing_column(true);
    provider.pool().close().await;
    let printed = assert_each_cause_once(statement_refused(provider).await);
    assert!(printed.contains("pool was closed"), "{printed}");
}

#[tokio::test]
async fn a_refused_connection_prints_each_cause_once() {
    let err = match PostgresLockProvider::connect("postgres://app@127.0.0.1:1/app").await {
        Err(err) => err,
        Ok(provider) => panic!("port 1 should refuse connections: {provider:?}"),
    };
    let printed = assert_each_cause_once(err);
    assert!(printed.contains("127.0.0.1:1"), "{printed}");
}
