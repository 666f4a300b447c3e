//! The lock table on each database: name limits, rows deleted by hand,
//! ShedLock's plain table (tokens from the database's clock), its companion
//! settings table missing or made with other columns, and sharing
//! rows with ShedLock for Java, whose statements are replayed here as its
//! `JdbcTemplateStorageAccessor` sends them (times from the client, in UTC).

mod support;

use std::time::{Duration, SystemTime};

use shedlock_core::{BoxFuture, LockAdmin, LockConfiguration, LockError, LockProvider};
use shedlock_sql::sqlx;
use shedlock_sql::{MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};
use shedlock_test_support::conformance::{acquire, assert_held, token_of_a_cycle};
use shedlock_test_support::sql::{
    TestTable, connect_mysql, connect_postgres, open_sqlite, sqlite_file, unique_table_name,
};
use support::assert_store_errors_say;

const LONG: Duration = Duration::from_secs(30);

fn config(name: &str, lock_at_least_for: Duration) -> LockConfiguration {
    LockConfiguration::new(name, LONG, lock_at_least_for)
        .unwrap_or_else(|err| panic!("test configuration rejected: {err}"))
}

/// What a test does to a table besides locking: ShedLock for Java's
/// statements, and plain SQL, each written once with the database's
/// placeholders.
trait Table: LockProvider + Sized {
    /// The statement's parameter `n` (from 1).
    fn param(n: usize) -> String;
    /// The parameter `n`, a timestamp as ShedLock for Java binds it.
    fn timestamp(n: usize) -> String;
    /// The timestamp `column`, read as `YYYY-MM-DD HH:MM:SS.mmm` text.
    fn read(column: &str) -> String;
    /// The lock table's name.
    fn table(&self) -> String;
    /// Sends `sql` with `values` bound in order; the rows it changed.
    fn execute(&self, sql: String, values: Vec<String>) -> BoxFuture<'_, u64>;
    /// The row `sql` reads with `name` bound.
    fn fetch_row<'a>(
        &'a self,
        sql: String,
        name: &'a str,
    ) -> BoxFuture<'a, Option<(String, String, String)>>;

    /// `INSERT INTO t(name, lock_until, locked_at, locked_by) VALUES(?, ?, ?, ?)`.
    fn java_insert<'a>(&'a self, name: &'a str, lock_until: SystemTime) -> BoxFuture<'a, u64> {
        let sql = format!(
            "INSERT INTO {}(name, lock_until, locked_at, locked_by) VALUES({}, {}, {}, {})",
            self.table(),
            Self::param(1),
            Self::timestamp(2),
            Self::timestamp(3),
            Self::param(4)
        );
        let now = utc_text(SystemTime::now());
        self.execute(
            sql,
            vec![name.to_owned(), utc_text(lock_until), now, host()],
        )
    }

    /// `UPDATE t SET lock_until = ?, locked_at = ?, locked_by = ? WHERE name = ? AND lock_until <= ?`.
    fn java_update<'a>(&'a self, name: &'a str, lock_until: SystemTime) -> BoxFuture<'a, u64> {
        let sql = format!(
            "UPDATE {} SET lock_until = {}, locked_at = {}, locked_by = {} \
             WHERE name = {} AND lock_until <= {}",
            self.table(),
            Self::timestamp(1),
            Self::timestamp(2),
            Self::param(3),
            Self::param(4),
            Self::timestamp(5)
        );
        let now = utc_text(SystemTime::now());
        let values = vec![
            utc_text(lock_until),
            now.clone(),
            host(),
            name.to_owned(),
            now,
        ];
        self.execute(sql, values)
    }

    /// Java's unlock: `UPDATE t SET lock_until = ? WHERE name = ?`.
    fn java_unlock<'a>(&'a self, name: &'a str, lock_until: SystemTime) -> BoxFuture<'a, u64> {
        let sql = format!(
            "UPDATE {} SET lock_until = {} WHERE name = {}",
            self.table(),
            Self::timestamp(1),
            Self::param(2)
        );
        self.execute(sql, vec![utc_text(lock_until), name.to_owned()])
    }

    /// `lock_until`, `locked_at` as `YYYY-MM-DD HH:MM:SS.mmm` text, and `locked_by`.
    fn row<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<(String, String, String)>> {
        let sql = format!(
            "SELECT {}, {}, locked_by FROM {} WHERE name = {}",
            Self::read("lock_until"),
            Self::read("locked_at"),
            self.table(),
            Self::param(1)
        );
        self.fetch_row(sql, name)
    }

    fn delete_row<'a>(&'a self, name: &'a str) -> BoxFuture<'a, u64> {
        let sql = format!(
            "DELETE FROM {} WHERE name = {}",
            self.table(),
            Self::param(1)
        );
        self.execute(sql, vec![name.to_owned()])
    }
}

/// A time as ShedLock for Java binds it: UTC, millisecond precision.
fn utc_text(time: SystemTime) -> String {
    let text = humantime::format_rfc3339_millis(time).to_string();
    text.trim_end_matches('Z').replace('T', " ")
}

fn host() -> String {
    shedlock_core::identity::host_name()
}

/// [`Table`] on `$provider`: its placeholders, and statements sent on its pool.
macro_rules! table_impl {
    ($provider:ty, $p:expr, $timestamp:expr, $read:expr) => {
        impl Table for $provider {
            fn param(n: usize) -> String {
                $p(n)
            }

            fn timestamp(n: usize) -> String {
                $timestamp(n)
            }

            fn read(column: &str) -> String {
                $read(column)
            }

            fn table(&self) -> String {
                self.table_name()
            }

            fn execute(&self, sql: String, values: Vec<String>) -> BoxFuture<'_, u64> {
                Box::pin(async move {
                    values
                        .iter()
                        .fold(sqlx::query(&sql), |query, value| query.bind(value.as_str()))
                        .execute(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"))
                        .rows_affected()
                })
            }

            fn fetch_row<'a>(
                &'a self,
                sql: String,
                name: &'a str,
            ) -> BoxFuture<'a, Option<(String, String, String)>> {
                Box::pin(async move {
                    sqlx::query_as(&sql)
                        .bind(name)
                        .fetch_optional(self.pool())
                        .await
                        .unwrap_or_else(|err| panic!("{sql}: {err}"))
                })
            }
        }
    };
}

table_impl!(
    PostgresLockProvider,
    |n| format!("${n}"),
    |n| format!("CAST(${n} AS TIMESTAMP)"),
    |column| format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.MS')")
);
table_impl!(
    MySqlLockProvider,
    |_| "?".to_owned(),
    |_| "?".to_owned(),
    |column| format!("CAST(LEFT(DATE_FORMAT({column}, '%Y-%m-%d %H:%i:%s.%f'), 23) AS CHAR)")
);
table_impl!(
    SqliteLockProvider,
    |n| format!("?{n}"),
    |n| format!("?{n}"),
    |column: &str| column.to_owned()
);

/// The plain ShedLock DDL (no fencing column), as ShedLock's README gives it.
fn plain_ddl(table: &str, timestamp: &str) -> String {
    format!(
        "CREATE TABLE {table}(name VARCHAR(64) NOT NULL, lock_until {timestamp} NOT NULL, \
         locked_at {timestamp} NOT NULL, locked_by VARCHAR(255) NOT NULL, PRIMARY KEY (name))"
    )
}

/// How a test's tables are made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tables {
    /// `create_table_if_missing`: the lock table with the fencing column, and its companion.
    Ours,
    /// ShedLock's plain DDL by hand (as a Java service's migration made
    /// it), then `create_table_if_missing` for the companion.
    Plain,
    /// ShedLock's plain DDL by hand, and nothing else: no companion.
    PlainOnly,
    /// ShedLock's plain DDL, and a companion with other columns, by hand.
    WrongSettings,
    /// As `Plain`, with a shared holders' table of other columns made by
    /// hand before (which `create_table_if_missing` leaves as it is).
    WrongHolders,
    /// As `Plain`, with the exclusive waiters' table dropped after.
    NoWaiters,
    /// None: the provider is on a table nobody made.
    Missing,
}

async fn postgres(tables: Tables) -> PostgresLockProvider {
    let table = unique_table_name("table");
    let ddl = plain_ddl(&table, "TIMESTAMP(3)");
    made(connect_postgres().await, &table, tables, ddl).await
}

async fn mysql(tables: Tables) -> MySqlLockProvider {
    let table = unique_table_name("table");
    let ddl = plain_ddl(&table, "TIMESTAMP(3)").replacen(
        "locked_at TIMESTAMP(3) NOT NULL",
        "locked_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)",
        1,
    );
    made(connect_mysql().await, &table, tables, ddl).await
}

async fn sqlite(tables: Tables) -> SqliteLockProvider {
    let table = unique_table_name("table");
    let file = sqlite_file(env!("CARGO_TARGET_TMPDIR"), &table);
    let ddl = plain_ddl(&table, "TEXT");
    made(open_sqlite(&file).await, &table, tables, ddl).await
}

/// `provider` on `table`, made as `tables` says; `ddl`: ShedLock's plain
/// table in the database's types.
async fn made<P: TestTable + HasTable>(provider: P, table: &str, tables: Tables, ddl: String) -> P {
    if tables == Tables::Missing {
        return provider.table_named("no_such_table_here");
    }
    let provider = provider.table_named(table);
    if tables != Tables::Ours {
        provider.execute(&ddl).await;
    }
    match tables {
        Tables::Ours | Tables::Plain => provider.create().await,
        Tables::WrongHolders => {
            provider
                .execute(
                    "CREATE TABLE {table}_holders(name VARCHAR(64) NOT NULL, holder VARCHAR(255))",
                )
                .await;
            provider.create().await
        }
        Tables::NoWaiters => {
            provider.create().await;
            provider.execute("DROP TABLE {table}_waiters").await
        }
        Tables::PlainOnly | Tables::Missing => {}
        Tables::WrongSettings => {
            provider
                .execute(
                    "CREATE TABLE {table}_settings(name VARCHAR(64) NOT NULL PRIMARY KEY, cap INT)",
                )
                .await
        }
    }
    provider
}

/// `create_table_if_missing` of each provider.
trait HasTable {
    fn create(&self) -> BoxFuture<'_, ()>;
    fn fencing(&self) -> BoxFuture<'_, bool>;
}

macro_rules! has_table {
    ($($provider:ty),*) => {$(
        impl HasTable for $provider {
            fn create(&self) -> BoxFuture<'_, ()> {
                Box::pin(async move {
                    self.create_table_if_missing()
                        .await
                        .unwrap_or_else(|err| panic!("cannot create the test table: {err}"))
                })
            }

            fn fencing(&self) -> BoxFuture<'_, bool> {
                Box::pin(async move {
                    self.uses_fencing_column()
                        .await
                        .unwrap_or_else(|err| panic!("cannot read the table: {err}"))
                })
            }
        }
    )*};
}

has_table!(PostgresLockProvider, MySqlLockProvider, SqliteLockProvider);

async fn names_longer_than_the_column_are_refused_before_any_statement<P: LockProvider>(
    provider: P,
) {
    // The provider's table does not exist: any statement would fail otherwise.
    let name = "n".repeat(65);
    let result = provider.try_lock(&config(&name, Duration::ZERO)).await;
    match result {
        Err(LockError::InvalidConfiguration(message)) => {
            assert!(message.contains("VARCHAR(64)"), "{message}")
        }
        other => panic!("a 65-character name must be refused: {other:?}"),
    }
}

/// A shared holders' table with other columns (an older or foreign table
/// of that name) is a clear error naming what it lacks and giving the DDL,
/// for exclusive, shared and operators' calls alike.
async fn a_holders_table_with_other_columns_is_a_clear_error<P: LockProvider + LockAdmin>(
    provider: P,
) {
    let base = config("bad-holders", Duration::ZERO);
    let results = [
        provider.try_lock(&base).await.map(drop),
        provider.try_lock(&base.clone().shared()).await.map(drop),
        provider.lock_state("bad-holders").await.map(drop),
    ];
    assert_store_errors_say(
        results,
        "a holders table without its columns",
        &[
            "_holders' has no column locked_by, permits",
            "CREATE TABLE IF NOT EXISTS",
            "permits INT",
        ],
    );
}

/// Without the exclusive waiters' table, calls fail with an error that
/// names it and gives its DDL (a force-release, which needs no waiter,
/// works: see `force_release_works_on_the_table_of_shedlock_for_java_alone`).
async fn a_missing_waiters_table_is_a_clear_error_giving_its_ddl<P: LockProvider + LockAdmin>(
    provider: P,
) {
    let counted = config("no-waiters", Duration::ZERO)
        .with_permits(2)
        .unwrap_or_else(|err| panic!("{err}"));
    let results = [
        provider.try_lock(&counted).await.map(drop),
        provider.lock_state("no-waiters").await.map(drop),
    ];
    assert_store_errors_say(
        results,
        "a missing waiters table",
        &[
            "there is no table",
            "_waiters'",
            "create_table_if_missing",
            "queued_until",
        ],
    );
}

/// An attempt at the lock `name`: whether the store answered.
async fn attempt<P: LockProvider>(provider: &P, name: &str) -> Result<(), LockError> {
    provider
        .try_lock(&config(name, Duration::ZERO))
        .await
        .map(drop)
}

async fn a_missing_table_is_a_clear_error<P: LockProvider>(provider: P) {
    let result = attempt(&provider, "missing-table").await;
    assert_store_errors_say([result], "a missing table", &["create_table_if_missing"]);
}

/// Without the companion table (ShedLock's table made by hand, as a Java
/// service's migration does), acquisitions and operators' calls fail with
/// an error that names the table and gives its DDL.
async fn a_missing_settings_table_is_a_clear_error_giving_its_ddl<P: LockProvider + LockAdmin>(
    provider: P,
) {
    let results = [
        attempt(&provider, "no-settings").await,
        provider.lock_state("no-settings").await.map(drop),
        provider.pause("no-settings").await,
    ];
    assert_store_errors_say(
        results,
        "a missing settings table",
        &[
            "_settings'",
            "create_table_if_missing",
            "CREATE TABLE IF NOT EXISTS",
            "capacity INT",
        ],
    );
}

/// On ShedLock for Java's table alone (its four columns, no companion
/// table), a force-release ends the lease of the row, which Java's
/// acquisitions then take; there are no shared holders to end. (It asked
/// for every companion table.)
async fn force_release_works_on_the_table_of_shedlock_for_java_alone<
    P: Table + LockAdmin + HasTable,
>(
    provider: P,
) {
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(provider.java_insert("java-job", in_an_hour).await, 1);
    let released = provider
        .force_release("java-job")
        .await
        .unwrap_or_else(|err| panic!("force-release on ShedLock for Java's table: {err}"));
    assert_eq!(released, 1);
    let in_two_hours = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(
        provider.java_update("java-job", in_two_hours).await,
        1,
        "ShedLock for Java could not take the force-released lock"
    );
    // Once the companion tables are made, the provider uses them.
    provider.create().await;
    assert_eq!(
        provider.force_release("java-job").await.ok(),
        Some(1),
        "with the companion tables"
    );
}

/// A companion table with other columns is a clear error naming what is missing.
async fn a_settings_table_with_other_columns_is_a_clear_error<P: LockProvider + LockAdmin>(
    provider: P,
) {
    let results = [
        attempt(&provider, "bad-settings").await,
        provider.list_locks().await.map(drop),
    ];
    for result in results {
        let err = match result {
            Err(err @ LockError::Store { .. }) => err.to_string(),
            other => panic!("a settings table without its columns must be refused: {other:?}"),
        };
        assert!(
            err.contains("has no column capacity, resume_to") && err.contains("CREATE TABLE"),
            "{err}"
        );
    }
}

/// A released lock is free at once, however soon after its acquisition:
/// the database's clock read within one millisecond never finds the
/// released lease still running (PostgreSQL rounds the microseconds of
/// `now()` to the column's milliseconds, half the time upwards).
async fn a_released_lock_is_free_at_once<P: LockProvider>(provider: P) {
    let config = config("released-at-once", Duration::ZERO);
    for cycle in 0..1000 {
        match provider.try_lock(&config).await {
            Ok(Some(guard)) => guard.unlock().await.unwrap_or_else(|err| panic!("{err}")),
            other => panic!("cycle {cycle}: the released lock was not free: {other:?}"),
        }
    }
}

async fn a_row_deleted_by_hand_does_not_break_locking<P: Table>(provider: P) {
    let config = config("deleted-row", Duration::ZERO);
    acquire(&provider, &config)
        .await
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        provider.delete_row(config.name()).await,
        1,
        "the row should stay after unlock"
    );
    let guard = acquire(&provider, &config).await;
    assert_held(&provider, &config).await;
    // Deleted while held: the next acquisition inserts a new row.
    assert_eq!(provider.delete_row(config.name()).await, 1);
    let next = acquire(&provider, &config).await;
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    assert_held(&provider, &config).await; // the stale unlock left the new row alone
    next.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    assert!(provider.row(config.name()).await.is_some());
}

async fn the_plain_shedlock_table_works_with_clock_tokens<P: Table + HasTable>(provider: P) {
    assert!(
        !provider.fencing().await,
        "the plain table has no fencing column"
    );
    let config = config("plain", Duration::ZERO);
    let mut last = 0;
    for _ in 0..5 {
        let guard = acquire(&provider, &config).await;
        assert_held(&provider, &config).await;
        let token = guard.fencing_token().await.unwrap();
        // Microseconds since 1970 by the database's clock: after 2020.
        assert!(
            token > 1_577_836_800_000_000,
            "token {token} is not a clock reading"
        );
        assert!(token > last, "token {token} after {last}");
        last = token;
        guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

async fn the_fencing_column_rises_with_every_acquisition<P: Table + HasTable>(provider: P) {
    assert!(
        provider.fencing().await,
        "create_table_if_missing adds the fencing column"
    );
    let config = config("counted", Duration::ZERO);
    // A new row's counter starts at the database's clock in microseconds
    // (the same machine's here); each acquisition then takes max(counter + 1,
    // the clock), as on Redis, so tokens rise whatever wrote the row before.
    let first = token_of_a_cycle(&provider, &config).await;
    let clock = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    assert!(
        u128::from(first).abs_diff(clock) < 60_000_000,
        "the first token {first} is not the clock {clock}"
    );
    let mut last = first;
    for _ in 0..2 {
        let next = token_of_a_cycle(&provider, &config).await;
        assert!(next > last, "token {next} after {last}");
        last = next;
    }
    // A row deleted (pruned, or by hand) starts again above every token it
    // gave: SQLite's clock counts milliseconds, so one passes first.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(provider.delete_row(config.name()).await, 1);
    let again = token_of_a_cycle(&provider, &config).await;
    assert!(again > last, "{again} after {last}");
}

async fn a_lock_taken_by_shedlock_for_java_is_honoured<P: Table>(provider: P) {
    let config = config("java-holds", Duration::ZERO);
    let now = SystemTime::now();
    assert_eq!(
        provider
            .java_insert(config.name(), now + Duration::from_secs(30))
            .await,
        1
    );
    assert_held(&provider, &config).await;
    // Java unlocks (lock_until = now): ours takes it.
    assert_eq!(
        provider
            .java_unlock(config.name(), SystemTime::now() - Duration::from_millis(5))
            .await,
        1
    );
    let guard = acquire(&provider, &config).await;
    // Java's update, while ours holds it, matches nothing.
    assert_eq!(
        provider
            .java_update(config.name(), SystemTime::now() + LONG)
            .await,
        0
    );
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    // After ours unlocked, Java takes it with its own update.
    assert_eq!(
        provider
            .java_update(config.name(), SystemTime::now() + LONG)
            .await,
        1
    );
    assert_held(&provider, &config).await;
}

async fn our_rows_read_as_shedlock_for_java_writes_them<P: Table>(provider: P) {
    let config = config("java-reads", Duration::from_secs(10));
    let before = utc_text(SystemTime::now() - Duration::from_secs(5));
    let guard = acquire(&provider, &config).await;
    let after = utc_text(SystemTime::now() + Duration::from_secs(5));
    let Some((lock_until, locked_at, locked_by)) = provider.row(config.name()).await else {
        panic!("no row for a held lock");
    };
    // UTC times with milliseconds, as Java's JDBC reads them.
    assert!(
        before <= locked_at && locked_at <= after,
        "locked_at {locked_at} not near now (UTC)"
    );
    assert!(
        lock_until > locked_at,
        "lock_until {lock_until} <= locked_at {locked_at}"
    );
    assert_eq!(
        locked_at.len(),
        "2024-01-01 00:00:00.000".len(),
        "{locked_at}"
    );
    assert!(
        locked_by.starts_with(&format!("{}:{}", host(), std::process::id())),
        "{locked_by}"
    );
    // Java reads lock_until to decide: held while it is in the future.
    assert_eq!(
        provider
            .java_update(config.name(), SystemTime::now() + LONG)
            .await,
        0
    );
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    // lock_at_least_for (10 s, from locked_at) keeps it, for Java too.
    let (kept_until, _, _) = provider.row(config.name()).await.unwrap_or_default();
    assert!(
        kept_until > utc_text(SystemTime::now() + Duration::from_secs(8)),
        "{kept_until}"
    );
    assert_eq!(
        provider
            .java_update(config.name(), SystemTime::now() + LONG)
            .await,
        0
    );
}

/// One `#[tokio::test]` per case, each given the provider of `$database`
/// on tables made as its `Tables` says.
macro_rules! table_cases {
    ($database:ident: $($case:ident($tables:ident)),* $(,)?) => {
        mod $database {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::$database(super::Tables::$tables).await).await;
                }
            )*
        }
    };
}

macro_rules! table_tests {
    ($($database:ident),*) => {$(
        table_cases!($database:
            names_longer_than_the_column_are_refused_before_any_statement(Missing),
            a_holders_table_with_other_columns_is_a_clear_error(WrongHolders),
            a_missing_waiters_table_is_a_clear_error_giving_its_ddl(NoWaiters),
            a_missing_table_is_a_clear_error(Missing),
            a_missing_settings_table_is_a_clear_error_giving_its_ddl(PlainOnly),
            force_release_works_on_the_table_of_shedlock_for_java_alone(PlainOnly),
            a_settings_table_with_other_columns_is_a_clear_error(WrongSettings),
            a_released_lock_is_free_at_once(Ours),
            a_row_deleted_by_hand_does_not_break_locking(Ours),
            the_plain_shedlock_table_works_with_clock_tokens(Plain),
            the_fencing_column_rises_with_every_acquisition(Ours),
            a_lock_taken_by_shedlock_for_java_is_honoured(Plain),
            our_rows_read_as_shedlock_for_java_writes_them(Plain),
        );
    )*};
}

table_tests!(postgres, mysql, sqlite);

#[test]
fn table_names_that_are_not_plain_identifiers_are_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    runtime.block_on(async {
        let provider = sqlite(Tables::Plain).await;
        for bad in ["locks; DROP TABLE x", "a.b.c", "1abc", "locks\"", ""] {
            assert!(
                matches!(
                    provider.clone().with_table_name(bad),
                    Err(LockError::InvalidConfiguration(_))
                ),
                "{bad:?} accepted"
            );
        }
    });
}

/// MySQL's usual collations make names that differ only in case one lock:
/// its state, read with another spelling, still shows its shared holders.
#[tokio::test]
async fn mysql_lock_state_shows_the_holders_of_another_spelling() {
    let provider = mysql(Tables::Ours).await;
    let guard = acquire(&provider, &config("Case-Job", Duration::ZERO).shared()).await;
    let state = provider
        .lock_state("case-job")
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(state.holders.len(), 1, "{state:?}");
    assert_eq!(state.name, "case-job");
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
}
