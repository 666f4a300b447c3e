//! Nested calls on a held lock, on every SQL provider: the cases of the
//! lock-kinds conformance suite that need no shared locks in the store.
//! An exclusive holder re-enters a shared or counted call too: exclusive
//! covers it, and nothing more is asked of the table (which would refuse
//! shared configurations as unsupported at the top level).

/// One `#[tokio::test]` per case, for the provider `$make` gives.
macro_rules! reentrancy_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                shedlock_test_support::kinds::$case($make).await;
            }
        )*
    };
}

macro_rules! reentrancy_tests {
    ($make:expr) => {
        reentrancy_cases!($make;
            an_exclusive_holder_reenters_an_exclusive_call,
            an_exclusive_holder_reenters_a_shared_call,
            a_reentered_call_extends_the_lease_to_its_lock_at_most_for,
            a_reentered_call_never_shortens_the_lease,
            a_reentered_call_keeps_the_lock_its_lock_at_least_for,
            a_reentered_call_after_the_lease_ended_does_not_run,
        );
    };
}

mod postgres {
    use std::sync::LazyLock;

    use shedlock_sql::PostgresLockProvider;
    use shedlock_test_support::sql::{database_unreachable, postgres_url, unique_table_name};

    static TABLE: LazyLock<String> = LazyLock::new(|| unique_table_name("reentrancy"));

    async fn provider() -> PostgresLockProvider {
        let provider = PostgresLockProvider::connect(&postgres_url())
            .await
            .unwrap_or_else(|err| database_unreachable("postgres", &err))
            .with_table_name(&TABLE)
            .unwrap_or_else(|err| panic!("test table name rejected: {err}"));
        provider
            .create_table_if_missing()
            .await
            .unwrap_or_else(|err| panic!("cannot create the test table: {err}"));
        provider
    }

    reentrancy_tests!(provider);
}

mod mysql {
    use std::sync::LazyLock;

    use shedlock_sql::MySqlLockProvider;
    use shedlock_test_support::sql::{database_unreachable, mysql_url, unique_table_name};

    static TABLE: LazyLock<String> = LazyLock::new(|| unique_table_name("reentrancy"));

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

    reentrancy_tests!(provider);
}

mod sqlite {
    use std::path::PathBuf;
    use std::sync::LazyLock;

    use shedlock_sql::SqliteLockProvider;
    use shedlock_test_support::sql::unique_table_name;

    static FILE: LazyLock<PathBuf> = LazyLock::new(|| {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}.db", unique_table_name("reentrancy")))
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

    reentrancy_tests!(provider);
}
