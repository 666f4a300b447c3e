//! The MySQL provider passes the provider conformance suite against the
//! test MySQL or MariaDB server (`SHEDLOCK_TEST_MYSQL_URL`), on a table of this run's own;
//! every provider is a new pool.

use std::sync::LazyLock;

use shedlock_sql::MySqlLockProvider;
use shedlock_test_support::sql::{database_unreachable, mysql_url, unique_table_name};

static TABLE: LazyLock<String> = LazyLock::new(|| unique_table_name("conformance"));

async fn provider() -> MySqlLockProvider {
    let provider = MySqlLockProvider::connect(&mysql_url())
        .await
        .unwrap_or_else(|err| database_unreachable("mysql", &err))
        .with_table_name(&TABLE)
        .unwrap_or_else(|err| panic!("test table name rejected: {err}"));
    provider
        .create_table_if_missing()
        .await
        .unwrap_or_else(|err| panic!("cannot create the test table: {err}"));
    provider
}

shedlock_test_support::provider_conformance_tests!(provider);
