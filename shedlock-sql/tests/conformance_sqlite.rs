//! The SQLite provider passes the provider conformance suite on a database
//! file of this run's own; every provider is a new pool on that file.

mod support;

support::provider_on_own_table!(sqlite, shedlock_sql::SqliteLockProvider, "conformance");
shedlock_test_support::provider_conformance_tests!(provider);
shedlock_test_support::lock_kinds_conformance_tests!(provider);
