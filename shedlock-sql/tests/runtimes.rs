//! A provider keeps working after the Tokio runtime that made it is gone
//! (a `#[tokio::test]` per test, a runtime per request in some services):
//! its pooled connections belong to that runtime, and the next lock
//! operations (release included) must not fail on them.

use shedlock_test_support::runtimes::{lock_cycles_work, made_on_a_dropped_runtime};
use shedlock_test_support::sql::unique_table_name;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_provider_works_after_the_runtime_that_made_it_is_gone() {
    let table = unique_table_name("runtimes");
    let provider = made_on_a_dropped_runtime(async move { support::postgres(&table).await });
    lock_cycles_work(&provider, "postgres-other-runtime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_provider_works_after_the_runtime_that_made_it_is_gone() {
    let table = unique_table_name("runtimes");
    let provider = made_on_a_dropped_runtime(async move { support::mysql(&table).await });
    lock_cycles_work(&provider, "mysql-other-runtime").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_provider_works_after_the_runtime_that_made_it_is_gone() {
    let name = unique_table_name("runtimes");
    let provider = made_on_a_dropped_runtime(async move { support::sqlite(&name).await });
    lock_cycles_work(&provider, "sqlite-other-runtime").await;
}
