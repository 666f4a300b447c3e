//! The providers the SQL tests use (made by `shedlock_test_support::sql`):
//! each on the shared test server (or a file of the test run's own), on a
//! table of its own, created if missing.

// Each test binary uses some of these.
#![allow(dead_code, unused_macros, unused_imports)]

use std::fmt::Debug;
use std::path::PathBuf;

use shedlock_core::LockError;

use shedlock_sql::{DEFAULT_TABLE_NAME, SqliteLockProvider};
pub use shedlock_test_support::sql::{TestTable, mysql, postgres};

/// The database file `name`.db in the test run's directory.
pub fn sqlite_file(name: &str) -> PathBuf {
    shedlock_test_support::sql::sqlite_file(env!("CARGO_TARGET_TMPDIR"), name)
}

/// A new pool on the database file `name` (see [`sqlite_file`]), on
/// ShedLock's table.
pub async fn sqlite(name: &str) -> SqliteLockProvider {
    shedlock_test_support::sql::sqlite(&sqlite_file(name), DEFAULT_TABLE_NAME).await
}

/// `async fn provider()`: a new pool of `$store` (`postgres`, `mysql` or
/// `sqlite` above) on one table (or file) of this test binary's own.
macro_rules! provider_on_own_table {
    ($store:ident, $provider:ty, $tag:literal) => {
        static TABLE: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| shedlock_test_support::sql::unique_table_name($tag));

        async fn provider() -> $provider {
            crate::support::$store(&TABLE).await
        }
    };
}

pub(crate) use provider_on_own_table;

/// Fails the test unless every one of `results` is a store error whose
/// message has each of `expected` (`what` names the fault in the message).
pub fn assert_store_errors_say<T: Debug>(
    results: impl IntoIterator<Item = Result<T, LockError>>,
    what: &str,
    expected: &[&str],
) {
    for result in results {
        let err = match result {
            Err(err @ LockError::Store { .. }) => err.to_string(),
            other => panic!("{what} must be a store error: {other:?}"),
        };
        for expected in expected {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }
}
