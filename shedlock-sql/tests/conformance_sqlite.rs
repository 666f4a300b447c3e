//! The SQLite provider passes the provider conformance suite on a database
//! file of this run's own; every provider is a new pool on that file.

use std::path::PathBuf;
use std::sync::LazyLock;

use shedlock_sql::SqliteLockProvider;
use shedlock_test_support::sql::unique_table_name;

static FILE: LazyLock<PathBuf> = LazyLock::new(|| {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}.db", unique_table_name("conformance")))
});

async fn provider() -> SqliteLockProvider {
    let provider = SqliteLockProvider::open(&*FILE)
        .await
        .unwrap_or_else(|err| panic!("cannot open the test database: {err}"));
    provider
        .create_table_if_missing()
        .await
        .unwrap_or_else(|err| panic!("cannot create the test table: {err}"));
    provider
}

shedlock_test_support::provider_conformance_tests!(provider);
