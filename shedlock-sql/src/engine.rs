//! The one SQL engine: the lock operations on the statements a `Dialect`
//! gives, and the provider logic around them, in rooms: statement failures
//! (`failure`), the pool (`pool`), the statement runner (`runner`), the
//! tables and their check (`tables`), acquisition (`acquisition`), the lease
//! (`lease`), operators' reads and changes (`admin`), shared holders and
//! waiters (`kinds`), run history (`runs`, `runtimes`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use shedlock_core::identity::default_locked_by;
use shedlock_core::{LockError, ReleaseNotifiers};
use sqlx::Pool;
use tokio::sync::OnceCell;

use crate::dialect::Dialect;
use crate::releases::{self, ReleaseFeed};
use crate::table::TableName;

mod acquisition;
mod admin;
mod failure;
mod kinds;
mod lease;
mod pool;
mod runner;
mod runs;
mod runtimes;
mod tables;
mod ticks;

pub(crate) use failure::Failure;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use failure::connect_error;
use lease::SqlLease;
use pool::warn_if_unchecked;
pub(crate) use pool::{checkout, parse_url};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use pool::{connect, pool_options};
use runner::LeaseParams;
pub(crate) use runner::{SqlEngine, answer, taken};
use runner::{UNBOUNDED, token_of};
use tables::Prepared;

/// How long one statement (or waiting for a pooled connection) may take
/// before it fails. An acquisition whose answer does not come in time is
/// treated as possibly taken: see [`LockError::AcquisitionUncertain`].
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The row of one acquisition: the lock's name and this acquisition's unique `locked_by`.
pub(crate) struct LeaseRow {
    pub(crate) name: Arc<str>,
    pub(crate) locked_by: String,
    /// Kept from `locked_at` (the database's clock) when released early.
    pub(crate) lock_at_least_for: Duration,
    /// A shared holder's permits; `None`: an exclusive holder.
    pub(crate) permits: Option<u32>,
    /// The tick the acquisition claims (ms since 1970), if any.
    pub(crate) tick: Option<i64>,
    /// Once a tick is claimed: the tick claimed before (`None`: none was).
    pub(crate) previous_tick: std::sync::OnceLock<Option<i64>>,
}

/// The provider logic shared by the three databases.
pub(crate) struct SqlLocks<D: Dialect> {
    engine: Arc<SqlEngine<D>>,
    /// Host, port and database (or file): no credentials.
    server: Arc<str>,
    table: TableName,
    /// `Some`: set by `with_fencing_column`; `None`: detected at first use.
    fencing: Option<bool>,
    locked_by: Arc<str>,
    timeout: Duration,
    /// Whether releases after a run record it in `<table>_runs`.
    run_history: bool,
    /// The statements, once the fencing column is known (shared by clones).
    prepared: Arc<OnceCell<Prepared>>,
    /// Store, server and table: see `LockProvider::scope`.
    scope: Arc<str>,
    /// The waiters in this process on locks of this scope.
    releases: Arc<ReleaseNotifiers>,
    /// Releases by other processes, where the database announces them.
    feed: Option<Arc<dyn ReleaseFeed>>,
    /// The exclusive waiters this provider queued.
    queued: Arc<kinds::QueuedWaiters>,
}

impl<D: Dialect> Clone for SqlLocks<D> {
    fn clone(&self) -> Self {
        SqlLocks {
            engine: self.engine.clone(),
            server: self.server.clone(),
            table: self.table.clone(),
            fencing: self.fencing,
            locked_by: self.locked_by.clone(),
            timeout: self.timeout,
            run_history: self.run_history,
            prepared: self.prepared.clone(),
            scope: self.scope.clone(),
            releases: self.releases.clone(),
            feed: self.feed.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<D: Dialect> SqlLocks<D> {
    /// The provider logic on `pool`, which is only described (no statement
    /// is sent until the first lock).
    pub(crate) fn new(pool: Pool<D::Db>) -> Self {
        let server = D::server(&pool.connect_options());
        if D::SERVER {
            warn_if_unchecked(&pool, D::STORE, &server);
        }
        let table = TableName::shedlock();
        SqlLocks {
            engine: Arc::new(SqlEngine {
                pool,
                runtimes: Default::default(),
            }),
            server: server.into(),
            table,
            fencing: None,
            locked_by: default_locked_by().into(),
            timeout: DEFAULT_STATEMENT_TIMEOUT,
            run_history: false,
            prepared: Arc::default(),
            scope: "".into(),
            releases: Arc::default(),
            feed: None,
            queued: Arc::default(),
        }
        .with_new_scope()
    }

    fn with_new_scope(mut self) -> Self {
        self.scope = format!("{}:{}/{}", D::STORE, self.server, self.table).into();
        self.releases = releases::of_scope(&self.scope);
        self.feed = D::release_feed(&self.engine.pool, &self.table, &self.releases);
        // Another table or fencing setting: statements are made again.
        self.prepared = Arc::default();
        self
    }

    pub(crate) fn pool(&self) -> &Pool<D::Db> {
        &self.engine.pool
    }

    pub(crate) fn with_table_name(mut self, table: &str) -> Result<Self, LockError> {
        self.table = TableName::parse(table)?;
        Ok(self.with_new_scope())
    }

    pub(crate) fn table_name(&self) -> String {
        self.table.to_string()
    }

    pub(crate) fn with_fencing_column(mut self, fencing: bool) -> Self {
        self.fencing = Some(fencing);
        self.with_new_scope()
    }

    pub(crate) fn with_locked_by(mut self, locked_by: impl Into<String>) -> Self {
        self.locked_by = locked_by.into().into();
        self
    }

    pub(crate) fn locked_by(&self) -> &str {
        &self.locked_by
    }

    pub(crate) fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn with_run_history(mut self, record: bool) -> Self {
        self.run_history = record;
        self
    }

    pub(crate) fn scope(&self) -> &str {
        &self.scope
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }
}

impl<D: Dialect> fmt::Debug for SqlLocks<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlLocks")
            .field("server", &self.server)
            .field("table", &self.table)
            .field("fencing_column", &self.fencing)
            .field("locked_by", &self.locked_by)
            .field("statement_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
