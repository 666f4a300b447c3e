//! `SqlLockProvider<D>`: the lock provider on one SQL database, `D` being
//! [`Postgres`], [`MySql`] or [`Sqlite`] (sealed: the crate's own dialects),
//! as sqlx's `Pool<DB>` is one pool type over its databases. The fixed
//! names `PostgresLockProvider`, `MySqlLockProvider` and
//! `SqliteLockProvider` are its three instances.

use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch,
};

use crate::dialect::Dialect;
use crate::engine::SqlLocks;

/// A database [`SqlLockProvider`] runs on: [`Postgres`](crate::Postgres),
/// [`MySql`](crate::MySql) or [`Sqlite`](crate::Sqlite). Sealed: the
/// statements of each are the crate's own.
pub trait SqlDatabase: Dialect {}

/// A database server reached by URL, with a pool of the provider's own
/// ([`SqlLockProvider::connect`]): PostgreSQL and MySQL/MariaDB.
pub trait SqlServer: SqlDatabase {}

/// Locks in an SQL table (ShedLock's `shedlock` by default) on the database
/// `D`: use it by its names [`PostgresLockProvider`](crate::PostgresLockProvider),
/// [`MySqlLockProvider`](crate::MySqlLockProvider) and
/// [`SqliteLockProvider`](crate::SqliteLockProvider).
///
/// Credentials in a URL are used to connect and never appear in errors,
/// logs or `Debug` output.
pub struct SqlLockProvider<D: SqlDatabase> {
    pub(crate) locks: SqlLocks<D>,
}

impl<D: SqlDatabase> Clone for SqlLockProvider<D> {
    fn clone(&self) -> Self {
        SqlLockProvider {
            locks: self.locks.clone(),
        }
    }
}

impl<D: SqlDatabase> SqlLockProvider<D> {
    /// Uses the table `table` (`table` or `schema.table`; default
    /// `shedlock`, as ShedLock). Only plain identifiers are accepted,
    /// as the name is written into statements.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for anything but
    /// `[A-Za-z_][A-Za-z0-9_]*`, optionally after `schema.`, at most
    /// 63 characters each.
    pub fn with_table_name(self, table: &str) -> Result<Self, LockError> {
        Ok(SqlLockProvider {
            locks: self.locks.with_table_name(table)?,
        })
    }

    /// Says whether the table has the `fencing_token BIGINT` column
    /// (see the crate docs). Without this call, it is detected when
    /// the provider takes its first lock.
    pub fn with_fencing_column(self, fencing: bool) -> Self {
        SqlLockProvider {
            locks: self.locks.with_fencing_column(fencing),
        }
    }

    /// Sets who this process is in `locked_by` (default: host name and
    /// process id). Each acquisition appends `;id=<unique id>`; the
    /// whole is cut to fit `VARCHAR(255)`.
    pub fn with_locked_by(self, locked_by: impl Into<String>) -> Self {
        SqlLockProvider {
            locks: self.locks.with_locked_by(locked_by),
        }
    }

    /// Sets how long one statement (or waiting for a connection of the
    /// pool) may take; default [`DEFAULT_STATEMENT_TIMEOUT`](crate::DEFAULT_STATEMENT_TIMEOUT).
    /// An acquisition that times out after it was sent is reported as
    /// [`LockError::AcquisitionUncertain`] and its possible lease released.
    /// Operators' changes and [`prune`](Self::prune) are bounded on the
    /// server too, where it can be told to (PostgreSQL, MariaDB): a
    /// statement that runs out of time is cancelled there, with its row
    /// locks, rather than left running.
    pub fn with_statement_timeout(self, timeout: std::time::Duration) -> Self {
        SqlLockProvider {
            locks: self.locks.with_statement_timeout(timeout),
        }
    }

    /// Says whether each run under a lock is recorded in the lock's
    /// history (its last 20 runs: times by the database's clock,
    /// outcome, holder, token; read with
    /// [`LockAdmin::run_history`](shedlock_core::LockAdmin::run_history)
    /// and `shedlock history`), in the release's transaction (on
    /// PostgreSQL in the release statement). Off by default: it makes
    /// a job's lock cycle 1.1x (PostgreSQL) to 2x (SQLite) as long,
    /// see BENCHMARKS.md. The command reads runs whatever this is.
    pub fn with_run_history(self, record: bool) -> Self {
        SqlLockProvider {
            locks: self.locks.with_run_history(record),
        }
    }

    /// Creates the lock table if it does not exist: ShedLock's four
    /// columns plus `fencing_token BIGINT NOT NULL DEFAULT 0` (which
    /// ShedLock for Java ignores); and its companions `<table>_settings`
    /// (`name`, `capacity`, `resume_to`: the capacities and pauses
    /// operators set, which every acquisition reads) and `<table>_runs`
    /// (the last runs of each lock). Existing tables are left as they
    /// are. Safe to run from several processes at once.
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the statement fails (e.g. no
    /// `CREATE` privilege: create the table with the README's DDL).
    pub async fn create_table_if_missing(&self) -> Result<(), LockError> {
        self.locks.create_table_if_missing().await
    }

    /// Whether fencing tokens come from the `fencing_token` column
    /// (configured, or detected now). Without it, tokens come from the
    /// database's clock: see the crate docs.
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the table does not exist or cannot be read.
    pub async fn uses_fencing_column(&self) -> Result<bool, LockError> {
        self.locks.uses_fencing_column().await
    }

    /// Deletes the rows of locks not used for `unused_for`: those
    /// whose last lease ended more than `unused_for` ago, by the
    /// database's clock, so never a held lock's (ShedLock issue 713:
    /// per-resource lock names leave a row each), and their runs.
    /// Returns how many locks. Rows of the settings table stay: a pause or capacity is an
    /// operator's decision (and a paused lock is unused by design).
    /// A lock locked again gets a new row, and with the fencing
    /// column its tokens still rise: a new row's counter starts at
    /// the database's clock in microseconds.
    ///
    /// One transaction, each statement set-based (and on MySQL/MariaDB
    /// deleting at most 10,000 rows, sent again until it deletes fewer)
    /// and bounded by the statement timeout: a big table may need a
    /// longer one ([`with_statement_timeout`](Self::with_statement_timeout)).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for an `unused_for` above
    /// 1000 years (365.25 days each), before any statement;
    /// [`LockError::Store`] when the tables are missing or a statement
    /// fails or runs out of time (nothing was deleted then).
    pub async fn prune(&self, unused_for: std::time::Duration) -> Result<u64, LockError> {
        self.locks.prune(unused_for).await
    }

    /// The lock table's name, as given (`schema.table` or `table`).
    pub fn table_name(&self) -> String {
        self.locks.table_name()
    }

    /// `locked_by` of this provider's acquisitions, before the unique id.
    pub fn locked_by(&self) -> &str {
        self.locks.locked_by()
    }
}

impl<D: SqlServer> SqlLockProvider<D> {
    /// Connects to `url` (`postgres://[user[:password]@]host[:port]/database`,
    /// `mysql://[user[:password]@]host[:port]/database`; TLS settings in its
    /// query, feature `tls`) with a small pool of its own, whose settings
    /// `pool_options()` gives to build your own with them
    /// (`pool_options().connect_with(options)`):
    ///
    /// - `test_before_acquire(true)`: each connection is pinged right before
    ///   a lock operation uses it (one short round trip), so one the server
    ///   closed (`idle_session_timeout`, `wait_timeout`, a restart) is
    ///   replaced there, before a lock statement is sent on it;
    /// - `idle_timeout(60 s)`: idle connections are closed after 60-120 s,
    ///   before the server's idle limit or a NAT or load balancer (often
    ///   4-6 minutes) drops them without a word, which a ping could only
    ///   detect by timing out;
    /// - `max_lifetime(10 min)`: connections are renewed, so one to a server
    ///   that should no longer be used (a previous primary behind a moved DNS
    ///   name) is left within minutes;
    /// - `acquire_timeout(2 s)`: while the server is down or restarting, a
    ///   lock operation fails after 2 s with a [`LockError::Store`] saying
    ///   so, instead of hanging; the next operation connects again, so
    ///   locking resumes by itself once the server is back;
    /// - `max_connections(4)`: lock operations are short.
    ///
    /// MySQL sessions use the time zone `+00:00` (sqlx's default), so
    /// `TIMESTAMP` columns hold UTC as written.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        Ok(SqlLockProvider {
            locks: SqlLocks::new(crate::engine::connect::<D>(url).await?),
        })
    }
}

impl<D: SqlDatabase> LockProvider for SqlLockProvider<D> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(self.locks.try_lock(config))
    }

    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a shedlock_core::Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(self.locks.try_lock_waiting(config, waiter))
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        Box::pin(self.locks.watch_releases(name))
    }

    fn scope(&self) -> &str {
        self.locks.scope()
    }

    fn replica_identity(&self) -> &str {
        self.locks.locked_by()
    }
}

/// Operators' view (the `shedlock` command): a lock's live lease
/// from its row, by the database's clock; capacities and pauses in
/// the companion table `<table>_settings`, which every acquisition
/// reads in its own statement (a paused lock is not taken: `Ok(None)`).
/// The table has one holder per name, so shared holders never show;
/// renewals are not recorded (`renewals` and `renewed_ago` are `None`),
/// nor are waiters (`exclusive_waiters` is 0). `force_release` needs
/// only the lock table: on ShedLock for Java's table alone (no
/// companion tables) it ends the row's lease. Names the library
/// refuses (empty, blank, longer than the 64 characters of the
/// `name` column) are [`LockError::InvalidConfiguration`] before any
/// statement.
impl<D: SqlDatabase> shedlock_core::LockAdmin for SqlLockProvider<D> {
    fn lock_state<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<shedlock_core::LockState, LockError>> {
        Box::pin(self.locks.lock_state(name))
    }

    fn list_locks(&self) -> BoxFuture<'_, Result<Vec<shedlock_core::LockState>, LockError>> {
        Box::pin(self.locks.list_locks())
    }

    fn set_capacity<'a>(
        &'a self,
        name: &'a str,
        capacity: u32,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.locks.set_capacity(name, capacity))
    }

    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.locks.pause(name))
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.locks.resume(name))
    }

    fn force_release<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, LockError>> {
        Box::pin(self.locks.force_release(name))
    }

    fn run_history<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<shedlock_core::RunRecord>, LockError>> {
        Box::pin(self.locks.run_history(name))
    }

    fn last_runs<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<shedlock_core::RunRecord>>, LockError>> {
        Box::pin(self.locks.last_runs(names))
    }

    fn last_tick<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, LockError>> {
        Box::pin(self.locks.last_tick(name))
    }
}

impl<D: SqlDatabase> std::fmt::Debug for SqlLockProvider<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(D::PROVIDER)
            .field("server", &self.locks.server())
            .field("table", &self.locks.table_name())
            .field("locked_by", &self.locks.locked_by())
            .finish_non_exhaustive()
    }
}
