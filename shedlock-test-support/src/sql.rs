//! The SQL providers' test databases: the shared servers, the providers on
//! them (each on a table of a test's own), private servers a test may stop
//! and restart, and unique table names.

use std::sync::atomic::{AtomicU64, Ordering};

mod providers;
mod server_process;
mod servers;

pub use providers::{
    TestTable, connect_mysql, connect_postgres, mysql, open_sqlite, postgres, sqlite, sqlite_file,
    sqlite_on_a_new_file,
};
pub use servers::{
    MariaDb, MariaDbServer, Postgres, PostgresServer, PrivateServer, ServerDatabase,
};

/// The PostgreSQL server of the tests: `SHEDLOCK_TEST_POSTGRES_URL`, else
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("SHEDLOCK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MySQL/MariaDB server of the tests: `SHEDLOCK_TEST_MYSQL_URL`, else
/// `mysql://root@127.0.0.1:3306/test`.
pub fn mysql_url() -> String {
    std::env::var("SHEDLOCK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A table name no other test run uses: `shedlock_t_<pid>_<n>_<tag>`.
pub fn unique_table_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("shedlock_t_{}_{n}_{tag}", std::process::id())
}

/// Fails the test with how to get the server running (never a silent skip).
pub fn database_unreachable(database: &str, err: &dyn std::fmt::Display) -> ! {
    let (variable, how) = match database {
        "postgres" => (
            "SHEDLOCK_TEST_POSTGRES_URL",
            "apt-get install -y postgresql && service postgresql start, then create the database: \
             psql -U postgres -h 127.0.0.1 -c 'CREATE DATABASE test' (trust authentication on \
             127.0.0.1); `bash .ci/run` does all of it",
        ),
        _ => (
            "SHEDLOCK_TEST_MYSQL_URL",
            "apt-get install -y mariadb-server && service mariadb start, then \
             mariadb -u root -e 'CREATE DATABASE IF NOT EXISTS test' (root without password on \
             127.0.0.1); `bash .ci/run` does all of it",
        ),
    };
    fail!(
        "the {database} test server is unreachable ({err}). These tests need it: {how}. \
         Set {variable} to use another server."
    )
}
