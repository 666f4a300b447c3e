//! The SQL providers on the test databases, each on a table of a test's
//! own, and direct access to their tables: rows counted, SQL run.

use std::future::Future;
use std::path::{Path, PathBuf};

use shedlock_core::{LockAdmin, LockProvider};
use shedlock_sql::{
    DEFAULT_TABLE_NAME, MySqlLockProvider, PostgresLockProvider, SqliteLockProvider, sqlx,
};

use super::{database_unreachable, mysql_url, postgres_url};

/// A new pool on the PostgreSQL test server ([`postgres_url`]), on
/// ShedLock's default table, which is not made.
pub async fn connect_postgres() -> PostgresLockProvider {
    PostgresLockProvider::connect(&postgres_url())
        .await
        .unwrap_or_else(|err| database_unreachable("postgres", &err))
}

/// A new pool on the MySQL/MariaDB test server ([`mysql_url`]), on
/// ShedLock's default table, which is not made.
pub async fn connect_mysql() -> MySqlLockProvider {
    MySqlLockProvider::connect(&mysql_url())
        .await
        .unwrap_or_else(|err| database_unreachable("mysql", &err))
}

/// A new pool on the SQLite database `file` (created if missing), on
/// ShedLock's default table, which is not made.
pub async fn open_sqlite(file: &Path) -> SqliteLockProvider {
    SqliteLockProvider::open(file)
        .await
        .unwrap_or_else(|err| fail!("cannot open {}: {err}", file.display()))
}

/// The SQLite database file `{dir}/{name}.db`. Tests give their
/// `env!("CARGO_TARGET_TMPDIR")` as `dir`, so the processes of one test
/// binary find the same file by name.
pub fn sqlite_file(dir: &str, name: &str) -> PathBuf {
    Path::new(dir).join(format!("{name}.db"))
}

/// A new pool on the PostgreSQL test server, on `table`, created if missing.
pub async fn postgres(table: &str) -> PostgresLockProvider {
    connect_postgres().await.on_table(table).await
}

/// A new pool on the MySQL/MariaDB test server, on `table`, created if missing.
pub async fn mysql(table: &str) -> MySqlLockProvider {
    connect_mysql().await.on_table(table).await
}

/// A new pool on the SQLite database `file`, on `table`, created if missing.
pub async fn sqlite(file: &Path, table: &str) -> SqliteLockProvider {
    open_sqlite(file).await.on_table(table).await
}

/// A new pool on a new SQLite database file in `dir` (its name unique,
/// with `tag` in it), on ShedLock's default table, created.
pub async fn sqlite_on_a_new_file(dir: &str, tag: &str) -> SqliteLockProvider {
    let file = sqlite_file(dir, &super::unique_table_name(tag));
    sqlite(&file, DEFAULT_TABLE_NAME).await
}

/// A SQL provider of the tests, with direct access to its tables.
pub trait TestTable: LockProvider + LockAdmin + Sized {
    /// `self` on `table`, which is not made; a name the provider refuses
    /// fails the test.
    fn table_named(self, table: &str) -> Self;

    /// `self` on `table`, its tables created if missing.
    fn on_table(self, table: &str) -> impl Future<Output = Self> + Send;

    /// How many rows of the table `{lock table}{suffix}` (`""` for the lock
    /// table itself, `"_runs"` for its runs) are about `name`.
    fn count_rows(&self, suffix: &str, name: &str) -> impl Future<Output = i64> + Send;

    /// Runs `sql` as it is (statements separated by `;`), `{table}`
    /// standing for the lock table's name.
    fn execute(&self, sql: &str) -> impl Future<Output = ()> + Send;
}

/// The three providers differ only in how a statement's parameter is written.
macro_rules! test_table {
    ($($provider:ty, $placeholder:literal);*) => {$(
        impl TestTable for $provider {
            fn table_named(self, table: &str) -> Self {
                self.with_table_name(table)
                    .unwrap_or_else(|err| fail!("test table name '{table}' rejected: {err}"))
            }

            async fn on_table(self, table: &str) -> Self {
                let provider = self.table_named(table);
                provider
                    .create_table_if_missing()
                    .await
                    .unwrap_or_else(|err| fail!("cannot create the test table '{table}': {err}"));
                provider
            }

            async fn count_rows(&self, suffix: &str, name: &str) -> i64 {
                let sql = format!(
                    "SELECT COUNT(*) FROM {}{suffix} WHERE name = {}",
                    self.table_name(),
                    $placeholder
                );
                let (rows,): (i64,) = sqlx::query_as(&sql)
                    .bind(name)
                    .fetch_one(self.pool())
                    .await
                    .unwrap_or_else(|err| fail!("{sql}: {err}"));
                rows
            }

            async fn execute(&self, sql: &str) {
                let sql = sql.replace("{table}", &self.table_name());
                sqlx::raw_sql(&sql)
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|err| fail!("{sql}: {err}"));
            }
        }
    )*};
}

test_table!(
    PostgresLockProvider, "$1";
    MySqlLockProvider, "?";
    SqliteLockProvider, "?1"
);
