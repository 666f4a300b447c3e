//! The MySQL provider passes the provider conformance suite against the
//! test MySQL or MariaDB server (`SHEDLOCK_TEST_MYSQL_URL`), on a table of this run's own;
//! every provider is a new pool.

mod support;

support::provider_on_own_table!(mysql, shedlock_sql::MySqlLockProvider, "conformance");
shedlock_test_support::provider_conformance_tests!(provider);
shedlock_test_support::lock_kinds_conformance_tests!(provider);
