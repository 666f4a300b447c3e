//! Nested calls on a held lock, on every SQL provider: the cases of the
//! lock-kinds conformance suite that need no shared locks in the store.
//! An exclusive holder re-enters a shared or counted call too: exclusive
//! covers it, and nothing more is asked of the table (which would refuse
//! shared configurations as unsupported at the top level).

mod support;

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

/// A module `$store` of the cases, on a table (or file) of its own.
macro_rules! reentrancy_tests {
    ($store:ident, $provider:ty) => {
        mod $store {
            crate::support::provider_on_own_table!($store, $provider, "reentrancy");

            reentrancy_cases!(provider;
                an_exclusive_holder_reenters_an_exclusive_call,
                an_exclusive_holder_reenters_a_shared_call,
                a_reentered_call_extends_the_lease_to_its_lock_at_most_for,
                a_reentered_call_never_shortens_the_lease,
                a_reentered_call_keeps_the_lock_its_lock_at_least_for,
                a_reentered_call_after_the_lease_ended_does_not_run,
            );
        }
    };
}

reentrancy_tests!(postgres, shedlock_sql::PostgresLockProvider);
reentrancy_tests!(mysql, shedlock_sql::MySqlLockProvider);
reentrancy_tests!(sqlite, shedlock_sql::SqliteLockProvider);
