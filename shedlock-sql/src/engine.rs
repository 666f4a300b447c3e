//! What the three databases share: the `Engine` each one implements (its
//! statements), and the provider logic around it (pool settings, name
//! checks, fencing column detection, timeouts, lost answers, leases, release
//! notifications).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shedlock_core::identity::default_locked_by;
use shedlock_core::{
    BackgroundRelease, BoxFuture, Lease, LockConfiguration, LockError, LockGuard, ReleaseNotifiers,
    ReleaseWatch, StoreFailure,
};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{Database, Pool};
use tokio::sync::{OnceCell, oneshot};

use crate::releases;
use crate::table::{TableName, acquisition_locked_by, check_lock_name};

/// How long one statement (or waiting for a pooled connection) may take
/// before it fails. An acquisition whose answer does not come in time is
/// treated as possibly taken: see [`LockError::AcquisitionUncertain`].
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// One database's statements, for the provider logic below.
pub(crate) trait Engine: Send + Sync + 'static {
    /// The store's name in errors: "postgres", "mysql", "sqlite".
    const STORE: &'static str;

    /// The statements for one table, with or without the fencing column.
    type Statements: Send + Sync + 'static;

    /// Builds the statements of `table` (validated, so safe to put into SQL text).
    fn statements(table: &TableName, fencing: bool) -> Self::Statements;

    /// Whether `table` has a `fencing_token` column; `None` when there is no such table.
    fn has_fencing_column<'a>(
        &'a self,
        table: &'a TableName,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<bool>, Failure>>;

    /// `CREATE TABLE IF NOT EXISTS` with ShedLock's columns and `fencing_token`.
    fn create_table<'a>(
        &'a self,
        table: &'a TableName,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), Failure>>;

    /// A connection of the pool, for an acquisition.
    type Connection: Send + 'static;

    /// Takes a connection from the pool within `timeout` (nothing is sent yet).
    fn checkout(&self, timeout: Duration) -> BoxFuture<'_, Result<Self::Connection, Failure>>;

    /// Takes `name` for `lease` if its lease has ended (or it has no row yet);
    /// `Ok(Some(token))`: taken, `Ok(None)`: held. `timeout` bounds the wait
    /// for the answer.
    fn acquire<'a>(
        &'a self,
        connection: &'a mut Self::Connection,
        statements: &'a Self::Statements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, Failure>>;

    /// How long the current lease of `name` has left (zero once ended);
    /// `None` when there is no row.
    fn lease_left<'a>(
        &'a self,
        statements: &'a Self::Statements,
        name: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Duration>, Failure>>;

    /// Sets `lock_until = now + lock_at_most_for` if the lease is `lease`'s and
    /// has not ended.
    fn extend<'a>(
        &'a self,
        statements: &'a Self::Statements,
        lease: &'a LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>>;

    /// Sets `lock_until = LEAST(lock_until, GREATEST(locked_at +
    /// lock_at_least_for, now + keep_for))` if the lease is `lease`'s and has not ended.
    fn release<'a>(
        &'a self,
        statements: &'a Self::Statements,
        lease: &'a LeaseRow,
        keep_for: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, Failure>>;
}

/// The row of one acquisition: the lock's name and this acquisition's unique `locked_by`.
pub(crate) struct LeaseRow {
    pub(crate) name: Arc<str>,
    pub(crate) locked_by: String,
    /// Kept from `locked_at` (the database's clock) when released early.
    pub(crate) lock_at_least_for: Duration,
}

/// A statement that failed, and whether it may have run anyway.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The statement was sent and its answer never came: it may have run.
    pub(crate) unanswered: bool,
    /// What went wrong, named by its kind; sqlx's own words are in `cause`.
    pub(crate) what_happened: String,
    pub(crate) cause: Option<sqlx::Error>,
}

impl Failure {
    /// `err`, a failure that is certain (nothing ran).
    pub(crate) fn of(err: sqlx::Error) -> Self {
        Failure {
            unanswered: false,
            what_happened: kind_of(&err),
            cause: Some(err),
        }
    }

    /// The same failure as the reason for `what`: "{what}: {what happened}".
    fn explaining(self, what: &str) -> Self {
        Failure {
            what_happened: format!("{what}: {}", self.what_happened),
            ..self
        }
    }

    /// The error of `action` at `server`, with sqlx's error as its source only.
    pub(crate) fn into_error(
        self,
        store: &'static str,
        server: &str,
        action: impl Into<String>,
        consequence: &str,
    ) -> LockError {
        let failure = StoreFailure {
            store,
            action: action.into(),
            what_happened: format!("{} at {server}: {}", store_title(store), self.what_happened),
            consequence: consequence.to_owned(),
        };
        match self.cause {
            Some(cause) => failure.caused_by(cause),
            None => failure.into(),
        }
    }
}

/// What `err` is, in words that name its kind and what to check; its own
/// text (the server's message, the OS error) stays in the source.
fn kind_of(err: &sqlx::Error) -> String {
    use sqlx::Error;
    let kind = match err {
        Error::Database(answer) => {
            return match answer.code() {
                Some(code) => format!("the database answered with error {code}"),
                None => "the database answered with an error".to_owned(),
            };
        }
        Error::Io(_) => {
            "the connection failed (the server closed or refused it, or the network dropped it)"
        }
        Error::Tls(_) => {
            "the TLS connection could not be made: check the server's certificate and the URL's \
             TLS settings"
        }
        Error::Configuration(_) => "the connection settings were refused",
        Error::Protocol(_) => "the database's answer could not be read (a protocol error)",
        Error::PoolTimedOut => {
            "no connection within the pool's acquire timeout: the database refuses or does not \
             answer connections (down, restarting, or unreachable from here), or all of the \
             pool's connections stayed in use"
        }
        Error::PoolClosed => "the connection pool was closed (Pool::close was called)",
        Error::WorkerCrashed => "the database driver's background worker stopped",
        Error::RowNotFound
        | Error::ColumnNotFound(_)
        | Error::ColumnIndexOutOfBounds { .. }
        | Error::ColumnDecode { .. }
        | Error::Decode(_)
        | Error::TypeNotFound { .. } => {
            "the answer did not have the expected shape: check that the table has ShedLock's \
             columns and types"
        }
        _ => "the database client failed",
    };
    kind.to_owned()
}

/// A pool that could not connect to `server`.
pub(crate) fn connect_error(store: &'static str, server: &str, err: sqlx::Error) -> LockError {
    Failure::of(err).into_error(
        store,
        server,
        "connecting",
        "check that the server runs there and the URL's user, password and database are right",
    )
}

/// ShedLock's table holds one holder per name, and no capacity: only
/// exclusive locks, and no default capacity other than 1 or none.
fn check_lock_kind<E: Engine>(config: &LockConfiguration) -> Result<(), LockError> {
    let paused_by_default = config.capacity() == Some(0);
    if config.mode() != shedlock_core::LockMode::Exclusive || paused_by_default {
        return Err(LockError::Unsupported {
            store: E::STORE,
            what: "shared, counted or paused locks (ShedLock's table has one holder per name)",
            advice: "use exclusive locks here, or the Redis or in-memory provider for lock kinds",
        });
    }
    Ok(())
}

fn store_title(store: &str) -> &'static str {
    match store {
        "postgres" => "PostgreSQL",
        "mysql" => "MySQL/MariaDB",
        _ => "SQLite",
    }
}

/// How long a lock operation waits for a connection of the provider's own
/// pool, opening a new one included. While the server is down (refusing
/// connections) or restarting, operations fail after this with a clear error
/// instead of hanging, and one that waits while the server comes back gets a
/// connection as soon as it accepts one.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection of the provider's own pool may stay idle: below the
/// limits servers and the network put on idle sessions (PostgreSQL
/// `idle_session_timeout`, MySQL `wait_timeout`, NAT and load-balancer idle
/// timeouts of 4-6 minutes that drop a connection without a word), so a
/// connection is closed here before it can die there. The pool checks every
/// minute: a connection is closed after 60-120 s of idleness.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection of the provider's own pool lives at most, however
/// busy: a server that still answers but should no longer be used (the
/// previous primary after a failover moved its DNS name) is left within this.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The settings of the pools the providers make (`connect`): a few
/// connections, each pinged right before use, so one the server closed
/// (an idle-session limit, a restart) is replaced there, before a lock
/// statement is sent on it; idle ones closed before the server or the
/// network does; a short wait for a connection.
pub(crate) fn pool_options<DB: Database>() -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(4)
        .test_before_acquire(true)
        .idle_timeout(IDLE_TIMEOUT)
        .max_lifetime(MAX_LIFETIME)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// Takes a connection from the pool within `timeout`. Nothing was sent yet,
/// so a failure here is certain.
pub(crate) async fn checkout<DB: Database>(
    pool: &Pool<DB>,
    timeout: Duration,
) -> Result<PoolConnection<DB>, Failure> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, pool.acquire()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => Err(Failure {
            unanswered: false,
            what_happened: no_connection(pool, started.elapsed()),
            cause: None,
        }),
        Ok(Err(err)) => Err(Failure::of(err).explaining("no connection")),
    }
}

/// Why the pool gave no connection in time, as far as it can tell: it had
/// room for a new one and could not open it, or all of its connections
/// stayed in use.
fn no_connection<DB: Database>(pool: &Pool<DB>, waited: Duration) -> String {
    let max = pool.options().get_max_connections();
    let waited = Duration::from_millis(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
    if pool.size() < max || pool.num_idle() > 0 {
        format!(
            "no connection within {waited:?}: a new one could not be opened (the database \
             refuses or does not answer connections: down, restarting, or unreachable from \
             here); every call tries again, so locking resumes by itself once it accepts \
             connections"
        )
    } else {
        format!(
            "no connection within {waited:?}: all {max} connections of the pool were in use or \
             being opened; if the database is up, give the pool more connections or look for \
             statements that take long"
        )
    }
}

/// Warns about a pool that hands out connections unchecked: one the server
/// closed while idle (an idle-session limit, a restart) then fails the next
/// lock operation instead of being replaced.
pub(crate) fn warn_if_unchecked<DB: Database>(pool: &Pool<DB>, store: &'static str, server: &str) {
    if !pool.options().get_test_before_acquire() {
        tracing::warn!(
            store, %server,
            "the pool does not check connections before use (test_before_acquire(false)): a \
             connection the server closed while idle will fail the next lock operation; build \
             the pool from the provider's pool_options(), or keep test_before_acquire(true)"
        );
    }
}

/// Waits up to `timeout` for a statement's answer. A timeout or a broken
/// connection after it was sent leaves open whether it ran.
pub(crate) async fn answer<T>(
    timeout: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, statement).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            let unanswered = matches!(
                err,
                sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
            );
            Err(Failure {
                unanswered,
                ..Failure::of(err)
            })
        }
        Err(_) => Err(Failure {
            unanswered: true,
            what_happened: format!("no answer within {timeout:?}"),
            cause: None,
        }),
    }
}

/// A duration in whole milliseconds, rounded up (a lease is never shorter
/// than asked), as SQL parameters take it.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// A token the database returned as a signed integer (never negative: a
/// counter from 1, or microseconds since 1970).
pub(crate) fn token(value: i64) -> u64 {
    value.max(1).unsigned_abs()
}

/// The token of an acquisition that went through. Failing to read it leaves
/// a lease taken, so the failure counts as unanswered: the lease is released.
pub(crate) fn taken(value: Result<i64, sqlx::Error>) -> Result<Option<u64>, Failure> {
    value
        .map(|value| Some(token(value)))
        .map_err(|err| Failure {
            unanswered: true,
            ..Failure::of(err)
                .explaining("the lock was taken but its fencing token could not be read")
        })
}

/// The provider logic shared by the three databases.
pub(crate) struct SqlLocks<E: Engine> {
    engine: Arc<E>,
    /// Host, port and database (or file): no credentials.
    server: Arc<str>,
    table: TableName,
    /// `Some`: set by `with_fencing_column`; `None`: detected at first use.
    fencing: Option<bool>,
    locked_by: Arc<str>,
    timeout: Duration,
    /// The statements, once the fencing column is known (shared by clones).
    prepared: Arc<OnceCell<Prepared<E::Statements>>>,
    /// Store, server and table: see `LockProvider::scope`.
    scope: Arc<str>,
    /// The waiters in this process on locks of this scope.
    releases: Arc<ReleaseNotifiers>,
}

impl<E: Engine> Clone for SqlLocks<E> {
    fn clone(&self) -> Self {
        SqlLocks {
            engine: self.engine.clone(),
            server: self.server.clone(),
            table: self.table.clone(),
            fencing: self.fencing,
            locked_by: self.locked_by.clone(),
            timeout: self.timeout,
            prepared: self.prepared.clone(),
            scope: self.scope.clone(),
            releases: self.releases.clone(),
        }
    }
}

impl<E: Engine> SqlLocks<E> {
    pub(crate) fn new(engine: E, server: String) -> Self {
        let table = TableName::shedlock();
        SqlLocks {
            engine: Arc::new(engine),
            server: server.into(),
            table,
            fencing: None,
            locked_by: default_locked_by().into(),
            timeout: DEFAULT_STATEMENT_TIMEOUT,
            prepared: Arc::default(),
            scope: "".into(),
            releases: Arc::default(),
        }
        .with_new_scope()
    }

    fn with_new_scope(mut self) -> Self {
        self.scope = format!("{}:{}/{}", E::STORE, self.server, self.table).into();
        self.releases = releases::of_scope(&self.scope);
        // Another table or fencing setting: statements are made again.
        self.prepared = Arc::default();
        self
    }

    pub(crate) fn engine(&self) -> &E {
        &self.engine
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

    pub(crate) fn scope(&self) -> &str {
        &self.scope
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) async fn create_table_if_missing(&self) -> Result<(), LockError> {
        self.engine
            .create_table(&self.table, self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error(
                    E::STORE,
                    &self.server,
                    format!("creating the lock table '{}'", self.table),
                    "create it by hand with the DDL in the README, or grant CREATE to this user",
                )
            })?;
        tracing::info!(table = %self.table, store = E::STORE, "lock table present");
        Ok(())
    }

    /// Whether this provider hands out fencing tokens from the `fencing_token`
    /// column (detecting the column now if it was not configured).
    pub(crate) async fn uses_fencing_column(&self) -> Result<bool, LockError> {
        Ok(self.prepared().await?.fencing)
    }

    async fn prepared(&self) -> Result<&Prepared<E::Statements>, LockError> {
        self.prepared
            .get_or_try_init(|| async {
                let fencing = match self.fencing {
                    Some(fencing) => fencing,
                    None => self.detect_fencing_column().await?,
                };
                tracing::debug!(
                    table = %self.table, store = E::STORE, fencing,
                    "lock table statements prepared"
                );
                Ok(Prepared {
                    fencing,
                    statements: Arc::new(E::statements(&self.table, fencing)),
                })
            })
            .await
    }

    async fn detect_fencing_column(&self) -> Result<bool, LockError> {
        let action = || format!("looking up the columns of the lock table '{}'", self.table);
        match self
            .engine
            .has_fencing_column(&self.table, self.timeout)
            .await
        {
            Ok(Some(fencing)) => Ok(fencing),
            Ok(None) => Err(StoreFailure {
                store: E::STORE,
                action: action(),
                what_happened: format!(
                    "{} at {}: there is no table '{}'",
                    store_title(E::STORE),
                    self.server,
                    self.table
                ),
                consequence: "create it with the DDL in the README or call \
                              create_table_if_missing() once at startup"
                    .to_owned(),
            }
            .into()),
            Err(failure) => {
                Err(failure.into_error(E::STORE, &self.server, action(), "no lock was taken"))
            }
        }
    }

    pub(crate) async fn try_lock(
        &self,
        config: &LockConfiguration,
    ) -> Result<Option<LockGuard>, LockError> {
        check_lock_name(config.name())?;
        check_lock_kind::<E>(config)?;
        let prepared = self.prepared().await?;
        let action = || format!("acquiring lock '{}'", config.name());
        let mut connection = self
            .engine
            .checkout(self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error(E::STORE, &self.server, action(), "the lock was not taken")
            })?;
        let lease = SqlLease {
            engine: self.engine.clone(),
            statements: prepared.statements.clone(),
            server: self.server.clone(),
            releases: self.releases.clone(),
            timeout: self.timeout,
            row: LeaseRow {
                name: config.shared_name().clone(),
                locked_by: acquisition_locked_by(&self.locked_by),
                lock_at_least_for: config.lock_at_least_for(),
            },
        };
        let lock_at_most_for = config.lock_at_most_for();
        // The statement keeps running after this call stops waiting for it
        // (timeout, or this future dropped): its answer then still comes back
        // to the task, which releases whatever it took. No guessing.
        let in_flight = lock_at_most_for.min(MAX_IN_FLIGHT).max(self.timeout);
        let requested_at = Instant::now();
        let deadline = requested_at + lock_at_most_for;
        let (answer_sender, answer) = oneshot::channel();
        tokio::spawn(async move {
            let reply = lease
                .engine
                .acquire(
                    &mut connection,
                    &lease.statements,
                    &lease.row,
                    lock_at_most_for,
                    in_flight,
                )
                .await;
            drop(connection);
            if let Err((reply, lease)) = answer_sender.send((reply, lease)) {
                settle_abandoned_acquisition(reply, lease, deadline).await;
            }
        });
        let mut pending = PendingAnswer {
            receiver: answer,
            deadline,
        };
        let reply = match tokio::time::timeout(self.timeout, &mut pending.receiver).await {
            Ok(reply) => Some(reply),
            Err(_elapsed) => {
                // From now on the task settles the answer itself, unless it
                // arrived in between: then it is handled here.
                pending.receiver.close();
                pending.receiver.try_recv().ok().map(Ok)
            }
        };
        match reply {
            Some(Ok((Ok(Some(token)), lease))) => {
                Ok(Some(LockGuard::new(config, token, requested_at, lease)))
            }
            Some(Ok((Ok(None), _))) => {
                self.hint_lease_end(&prepared.statements, config.name())
                    .await;
                Ok(None)
            }
            Some(Ok((Err(failure), lease))) if failure.unanswered => {
                // The error names the kind; the driver's own words go to the log.
                let reason = format!(
                    "{} at {}: {}",
                    store_title(E::STORE),
                    self.server,
                    failure.what_happened
                );
                if let Some(cause) = &failure.cause {
                    tracing::debug!(lock = %config.name(), error = %cause, "the acquisition's answer was lost");
                }
                Err(release_uncertain_acquisition(lease, deadline, reason).await)
            }
            Some(Ok((Err(failure), _))) => {
                Err(failure.into_error(E::STORE, &self.server, action(), "the lock was not taken"))
            }
            Some(Err(_)) => Err(StoreFailure {
                store: E::STORE,
                action: action(),
                what_happened: "the task running the acquisition ended without an answer (the \
                                runtime is shutting down?)"
                    .to_owned(),
                consequence: "the lock was not taken here".to_owned(),
            }
            .into()),
            None => {
                let reason = format!(
                    "{} at {} did not answer within {:?}",
                    store_title(E::STORE),
                    self.server,
                    self.timeout
                );
                tracing::warn!(
                    lock = %config.name(), %reason,
                    "lock acquisition uncertain; whatever it takes will be released when it answers"
                );
                Err(LockError::AcquisitionUncertain {
                    name: config.name().to_owned(),
                    reason,
                    released: false,
                })
            }
        }
    }

    /// Tells this process's waiters on `name`, if any, when its holder's
    /// lease ends, so they try again then rather than at their next poll.
    /// One more statement, only for a name somebody here waits for.
    async fn hint_lease_end(&self, statements: &E::Statements, name: &str) {
        if !self.releases.is_watched(name) {
            return;
        }
        let asked_at = Instant::now();
        match self.engine.lease_left(statements, name, self.timeout).await {
            Ok(left) => self
                .releases
                .note_lease_end(name, left.map(|left| asked_at + left)),
            Err(failure) => {
                tracing::debug!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot read when the held lock's lease ends; waiters poll"
                )
            }
        }
    }

    pub(crate) fn watch_releases(&self, name: &str) -> ReleaseWatch {
        self.releases.watch(name)
    }
}

impl<E: Engine> fmt::Debug for SqlLocks<E> {
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

/// Statements of one table, with the fencing mode they were made for.
struct Prepared<S> {
    fencing: bool,
    statements: Arc<S>,
}

type Answer<E> = (Result<Option<u64>, Failure>, SqlLease<E>);

/// Where an acquisition's answer arrives. Dropped unread (the caller's
/// future was dropped), it closes the channel so the task settles the answer,
/// and settles one that slipped in before the close.
struct PendingAnswer<E: Engine> {
    receiver: oneshot::Receiver<Answer<E>>,
    deadline: Instant,
}

impl<E: Engine> Drop for PendingAnswer<E> {
    fn drop(&mut self) {
        self.receiver.close();
        if let Ok((reply, lease)) = self.receiver.try_recv()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(settle_abandoned_acquisition(reply, lease, self.deadline));
        }
    }
}

/// The longest an acquisition's answer is awaited in the background. Past
/// it, the connection is given up and the lease it may take is looked for
/// (and released) until `lock_at_most_for` has passed.
const MAX_IN_FLIGHT: Duration = Duration::from_secs(600);

/// After an acquisition whose answer was lost (a broken connection): release
/// whatever it may have taken (`locked_by` is unique, so only that
/// acquisition's row can match), then report the failure.
async fn release_uncertain_acquisition<E: Engine>(
    lease: SqlLease<E>,
    deadline: Instant,
    reason: String,
) -> LockError {
    let name = lease.row.name.clone();
    // Found and released: settled. Not found: the statement may still land.
    let released = matches!(lease.release(Duration::ZERO).await, Ok(true));
    if released {
        tracing::warn!(lock = %name, %reason, "lock acquisition uncertain; the lease it took was released");
    } else {
        tracing::error!(
            lock = %name, %reason,
            "lock acquisition uncertain; looking for its lease in the background"
        );
        BackgroundRelease::possibly_taken(name.clone(), Arc::new(lease), deadline).spawn();
    }
    LockError::AcquisitionUncertain {
        name: name.to_string(),
        reason,
        released,
    }
}

/// The answer of an acquisition nobody waits for any more (timed out, or
/// the caller's future was dropped): release what it took, or may have
/// taken, until it would have ended (`deadline`).
async fn settle_abandoned_acquisition<E: Engine>(
    reply: Result<Option<u64>, Failure>,
    lease: SqlLease<E>,
    deadline: Instant,
) {
    let name = lease.row.name.clone();
    let release = match reply {
        Ok(Some(_)) => BackgroundRelease::held(name, Arc::new(lease), deadline),
        Err(failure) if failure.unanswered => {
            BackgroundRelease::possibly_taken(name, Arc::new(lease), deadline)
        }
        Ok(None) | Err(_) => return,
    };
    release.run().await;
}

/// One acquisition's lease: its row, found by name and unique `locked_by`.
struct SqlLease<E: Engine> {
    engine: Arc<E>,
    statements: Arc<E::Statements>,
    server: Arc<str>,
    releases: Arc<ReleaseNotifiers>,
    timeout: Duration,
    row: LeaseRow,
}

impl<E: Engine> Lease for SqlLease<E> {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            self.engine
                .extend(&self.statements, &self.row, lock_at_most_for, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error(
                        E::STORE,
                        &self.server,
                        format!("extending lock '{}'", self.row.name),
                        "the lease still ends at its previous end",
                    )
                })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let released = self
                .engine
                .release(&self.statements, &self.row, keep_for, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error(
                        E::STORE,
                        &self.server,
                        format!("releasing lock '{}'", self.row.name),
                        "the lease ends at lock_at_most_for at the latest",
                    )
                })?;
            // Waiters in this process wake when the lock is free: now, or once kept long enough.
            if released && keep_for.is_zero() {
                self.releases.notify_released(&self.row.name);
            } else if released {
                let free_at = Instant::now() + keep_for;
                self.releases.note_lease_end(&self.row.name, Some(free_at));
            }
            Ok(released)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// Every layer's message, joined as `{:#}` of anyhow prints them.
    fn layers(err: &LockError) -> Vec<String> {
        std::iter::successors(Some(err as &dyn Error), |e| (*e).source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_statement_error_names_its_kind_and_keeps_sqlx_words_in_the_source() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let failure = Failure::of(sqlx::Error::Io(refused));
        let err = failure.into_error(
            "postgres",
            "db:5432/test",
            "acquiring lock 'report'",
            "the lock was not taken",
        );
        let layers = layers(&err);
        assert_eq!(
            layers,
            [
                "lock store error (postgres) while acquiring lock 'report': PostgreSQL at \
                 db:5432/test: the connection failed (the server closed or refused it, or the \
                 network dropped it); the lock was not taken",
                // sqlx's own "error communicating with database: {cause}", without the cause.
                "error communicating with database",
                "refused by peer",
            ]
        );
    }
}
