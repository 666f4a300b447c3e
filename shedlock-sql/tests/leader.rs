//! Leader leases on PostgreSQL, MySQL/MariaDB and SQLite: the shared cases;
//! the lease is taken from the leader by deleting its row.

mod support;

use shedlock_test_support::leader;

macro_rules! leader_cases {
    ($store:ident, $provider:ty, $tag:literal, $placeholder:literal) => {
        mod $store {
            use super::leader;

            crate::support::provider_on_own_table!($store, $provider, $tag);

            fn table() -> &'static str {
                if $tag == "sqlite" {
                    shedlock_sql::DEFAULT_TABLE_NAME
                } else {
                    &TABLE
                }
            }

            shedlock_test_support::leader_conformance_tests!(provider);

            #[tokio::test]
            async fn a_leader_that_loses_its_lease_stops() {
                leader::a_leader_that_loses_its_lease_stops(provider, |name| async move {
                    let provider = provider().await;
                    let delete = format!("DELETE FROM {} WHERE name = {}", table(), $placeholder);
                    let deleted = shedlock_sql::sqlx::query(&delete)
                        .bind(name)
                        .execute(provider.pool())
                        .await
                        .unwrap();
                    assert_eq!(deleted.rows_affected(), 1);
                })
                .await;
            }
        }
    };
}

leader_cases!(
    postgres,
    shedlock_sql::PostgresLockProvider,
    "leader_pg",
    "$1"
);
leader_cases!(mysql, shedlock_sql::MySqlLockProvider, "leader_my", "?");
leader_cases!(sqlite, shedlock_sql::SqliteLockProvider, "sqlite", "?");
