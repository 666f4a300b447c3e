//! Which store the command works on, chosen by the URL's scheme: Redis, or
//! one of the SQL databases through shedlock-sql's providers.

use std::path::Path;
use std::time::Duration;

use shedlock_core::{LockAdmin, LockConfiguration, LockError};
use shedlock_redis::RedisLockProvider;
use shedlock_sql::sqlx::sqlite::SqliteConnectOptions;
use shedlock_sql::{MAX_SQL_NAME_LEN, MySqlLockProvider, PostgresLockProvider, SqliteLockProvider};

/// The schemes a store URL may have, for messages.
pub(crate) const SCHEMES: &str = "redis://, rediss://, redis+unix://, postgres://, \
                                  postgresql://, mysql://, mariadb:// or sqlite://";

/// The kind of store a URL names, from its scheme alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Redis,
    Postgres,
    MySql,
    Sqlite,
}

impl StoreKind {
    /// The kind of `url`'s store; a usage error naming only the scheme (a
    /// URL may hold a password) when it is none of [`SCHEMES`].
    pub(crate) fn of(url: &str) -> Result<StoreKind, String> {
        let scheme = url
            .split_once(':')
            .map_or("", |(scheme, _)| scheme)
            .to_ascii_lowercase();
        match scheme.as_str() {
            "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys" => {
                Ok(StoreKind::Redis)
            }
            "postgres" | "postgresql" => Ok(StoreKind::Postgres),
            "mysql" | "mariadb" => Ok(StoreKind::MySql),
            "sqlite" => Ok(StoreKind::Sqlite),
            "" => Err(format!(
                "the store URL has no scheme; give one of {SCHEMES}"
            )),
            _ => Err(format!(
                "the store URL's scheme `{scheme}` is not a store shedlock knows; give one of \
                 {SCHEMES}"
            )),
        }
    }

    fn is_sql(self) -> bool {
        self != StoreKind::Redis
    }

    /// Refuses, before connecting, a lock name the library would refuse on
    /// this store: empty, blank, too long (the SQL table's `name` column
    /// holds 64 characters).
    pub(crate) fn check_name(self, name: &str) -> Result<(), LockError> {
        LockConfiguration::new(name, Duration::from_secs(1), Duration::ZERO)?;
        let chars = name.chars().count();
        if self.is_sql() && chars > MAX_SQL_NAME_LEN {
            return Err(LockError::InvalidConfiguration(format!(
                "the lock name is {chars} characters long; no lock in an SQL table has a name \
                 longer than {MAX_SQL_NAME_LEN} (its `name VARCHAR({MAX_SQL_NAME_LEN})` column)"
            )));
        }
        Ok(())
    }
}

/// The options that say where locks are within a store.
pub(crate) struct Place<'a> {
    /// Redis: the first part of every key.
    pub(crate) prefix: &'a str,
    /// Redis: the second part of every key.
    pub(crate) environment: &'a str,
    /// SQL: the lock table.
    pub(crate) table: &'a str,
    /// SQL: how long each statement may take.
    pub(crate) statement_timeout: Duration,
}

/// A connected store.
pub(crate) enum Store {
    Redis(RedisLockProvider),
    Postgres(PostgresLockProvider),
    MySql(MySqlLockProvider),
    Sqlite(SqliteLockProvider),
}

impl Store {
    /// Connects to the store of `url` (of `kind`), on `place`.
    pub(crate) async fn connect(
        kind: StoreKind,
        url: &str,
        place: &Place<'_>,
    ) -> Result<Store, LockError> {
        Ok(match kind {
            StoreKind::Redis => Store::Redis(
                RedisLockProvider::connect(url)
                    .await?
                    .with_key_prefix(place.prefix)
                    .with_environment(place.environment),
            ),
            StoreKind::Postgres => Store::Postgres(
                PostgresLockProvider::connect(url)
                    .await?
                    .with_table_name(place.table)?
                    .with_statement_timeout(place.statement_timeout),
            ),
            StoreKind::MySql => Store::MySql(
                MySqlLockProvider::connect(url)
                    .await?
                    .with_table_name(place.table)?
                    .with_statement_timeout(place.statement_timeout),
            ),
            StoreKind::Sqlite => {
                existing_sqlite_file(url)?;
                Store::Sqlite(
                    SqliteLockProvider::connect(url)
                        .await?
                        .with_table_name(place.table)?
                        .with_statement_timeout(place.statement_timeout),
                )
            }
        })
    }

    /// The operators' view of the store.
    pub(crate) fn admin(&self) -> &dyn LockAdmin {
        match self {
            Store::Redis(provider) => provider,
            Store::Postgres(provider) => provider,
            Store::MySql(provider) => provider,
            Store::Sqlite(provider) => provider,
        }
    }

    /// Where the lock `name` lives, for `show`: its key, or its table.
    pub(crate) fn location(&self, name: &str) -> (&'static str, String) {
        let table = |table: String| ("table", format!("{table} (settings in {table}_settings)"));
        match self {
            Store::Redis(provider) => ("key", provider.lock_key(name)),
            Store::Postgres(provider) => table(provider.table_name()),
            Store::MySql(provider) => table(provider.table_name()),
            Store::Sqlite(provider) => table(provider.table_name()),
        }
    }

    /// Deletes what is kept of locks unused for `unused_for`: SQL rows whose
    /// last lease ended before; `None` on Redis, whose keys expire by themselves.
    pub(crate) async fn prune(&self, unused_for: Duration) -> Result<Option<u64>, LockError> {
        Ok(Some(match self {
            Store::Redis(_) => return Ok(None),
            Store::Postgres(provider) => provider.prune(unused_for).await?,
            Store::MySql(provider) => provider.prune(unused_for).await?,
            Store::Sqlite(provider) => provider.prune(unused_for).await?,
        }))
    }

    /// The lock table on SQL stores.
    pub(crate) fn table(&self) -> Option<String> {
        match self {
            Store::Redis(_) => None,
            Store::Postgres(provider) => Some(provider.table_name()),
            Store::MySql(provider) => Some(provider.table_name()),
            Store::Sqlite(provider) => Some(provider.table_name()),
        }
    }
}

/// An operator's command opens a database file that exists: the provider
/// would create a new, empty one at a mistyped path.
fn existing_sqlite_file(url: &str) -> Result<(), LockError> {
    let options: SqliteConnectOptions = url.parse().map_err(|err| {
        LockError::InvalidConfiguration(format!(
            "the SQLite URL is not valid ({err}); expected sqlite://path/to/file.db"
        ))
    })?;
    let file = options.get_filename();
    if Path::new(file).is_file() {
        return Ok(());
    }
    Err(shedlock_core::StoreFailure {
        store: "sqlite",
        action: "opening the database".to_owned(),
        what_happened: format!("there is no database file at {}", file.display()),
        consequence: "check the path (relative paths start from the current directory; \
                      sqlite:///abs/path.db for an absolute one); the services create the file \
                      when they first start"
            .to_owned(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_chooses_the_store() {
        for (url, kind) in [
            ("redis://127.0.0.1:6379", StoreKind::Redis),
            ("rediss://:pw@host:6380/0", StoreKind::Redis),
            ("redis+unix:///run/redis.sock", StoreKind::Redis),
            ("postgres://app:pw@db/app", StoreKind::Postgres),
            ("postgresql://db/app", StoreKind::Postgres),
            ("mysql://root@127.0.0.1/test", StoreKind::MySql),
            ("MariaDB://db/app", StoreKind::MySql),
            ("sqlite:///var/lib/locks.db", StoreKind::Sqlite),
            ("sqlite:locks.db", StoreKind::Sqlite),
        ] {
            assert_eq!(StoreKind::of(url), Ok(kind), "{url}");
        }
    }

    #[test]
    fn an_unknown_scheme_is_named_without_the_rest_of_the_url() {
        let err = StoreKind::of("mongodb://admin:s3cret@db").err();
        let err = err.unwrap_or_default();
        assert!(
            err.contains("`mongodb`") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(StoreKind::of("localhost").is_err());
    }

    #[test]
    fn names_are_checked_as_the_library_checks_them() {
        let long = "n".repeat(65);
        for kind in [StoreKind::Redis, StoreKind::Postgres] {
            assert!(kind.check_name("").is_err());
            assert!(kind.check_name("   ").is_err());
            assert!(kind.check_name("nightly-report").is_ok());
            assert!(kind.check_name(&"n".repeat(2000)).is_err());
        }
        assert!(StoreKind::Redis.check_name(&long).is_ok());
        assert!(StoreKind::Sqlite.check_name(&long).is_err());
    }
}
