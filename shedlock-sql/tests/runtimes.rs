//! A provider keeps working after the Tokio runtime that made it is gone
//! (a `#[tokio::test]` per test, a runtime per request in some services):
//! its pooled connections belong to that runtime, and the next lock
//! operations (release included) must not fail on them.

use shedlock_test_support::runtimes::{lock_cycles_work, made_on_a_dropped_runtime};
use shedlock_test_support::sql::unique_table_name;

mod support;

/// The test `$test` on a provider of `$store` (a `support` maker).
macro_rules! runtime_test {
    ($test:ident, $store:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let table = unique_table_name("runtimes");
            let provider = made_on_a_dropped_runtime(async move { support::$store(&table).await });
            lock_cycles_work(&provider, concat!(stringify!($store), "-other-runtime")).await;
        }
    };
}

runtime_test!(
    a_postgres_provider_works_after_the_runtime_that_made_it_is_gone,
    postgres
);
runtime_test!(
    a_mysql_provider_works_after_the_runtime_that_made_it_is_gone,
    mysql
);
runtime_test!(
    a_sqlite_provider_works_after_the_runtime_that_made_it_is_gone,
    sqlite
);
