//! The providers the SQL tests use: each on the shared test server (or a
//! file of the test run's own), on a table of its own, created if missing.

// Each test binary uses some of these.
#![allow(dead_code, unused_macros, unused_imports)]

use std::path::PathBuf;

use shedlock_sql::{
    DEFAULT_TABLE_NAME, MySqlLockProvider, PostgresLockProvider, SqliteLockProvider,
};
use shedlock_test_support::sql::{database_unreachable, mysql_url, postgres_url};

/// A provider of the tests, put on a table that exists.
pub trait OnTable: Sized {
    /// `self` on `table`, created if missing.
    async fn on_table(self, table: &str) -> Self;
}

macro_rules! on_table {
    ($($provider:ty),*) => {
        $(
            impl OnTable for $provider {
                async fn on_table(self, table: &str) -> Self {
                    let provider = self
                        .with_table_name(table)
                        .unwrap_or_else(|err| panic!("test table name rejected: {err}"));
                    provider
                        .create_table_if_missing()
                        .await
                        .unwrap_or_else(|err| panic!("cannot create the test table: {err}"));
                    provider
                }
            }
        )*
    };
}

on_table!(PostgresLockProvider, MySqlLockProvider, SqliteLockProvider);

/// A new pool on the PostgreSQL test server, on `table`.
pub async fn postgres(table: &str) -> PostgresLockProvider {
    PostgresLockProvider::connect(&postgres_url())
        .await
        .unwrap_or_else(|err| database_unreachable("postgres", &err))
        .on_table(table)
        .await
}

/// A new pool on the MySQL/MariaDB test server, on `table`.
pub async fn mysql(table: &str) -> MySqlLockProvider {
    MySqlLockProvider::connect(&mysql_url())
        .await
        .unwrap_or_else(|err| database_unreachable("mysql", &err))
        .on_table(table)
        .await
}

/// The database file `name`.db in the test run's directory.
pub fn sqlite_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.db"))
}

/// A new pool on the database file `name` (see [`sqlite_file`]), on
/// ShedLock's table.
pub async fn sqlite(name: &str) -> SqliteLockProvider {
    let file = sqlite_file(name);
    SqliteLockProvider::open(&file)
        .await
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", file.display()))
        .on_table(DEFAULT_TABLE_NAME)
        .await
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
