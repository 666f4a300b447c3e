//! The one SQL engine: the lock operations (checkout, bind, execute, count)
//! on the statements a `Dialect` gives, and the provider logic around them
//! (pool settings, name checks, fencing column detection, timeouts, lost
//! answers, leases, release notifications).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shedlock_core::identity::default_locked_by;
use shedlock_core::{
    BackgroundRelease, BoxFuture, FinishedRun, GrantedLease, Lease, LockConfiguration, LockError,
    LockGuard, ReleaseNotifiers, ReleaseWatch, StoreFailure,
};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::OnceCell;

use crate::dialect::{
    Acquire, ConnectOptionsOf, Dialect, LeaseParam, Statement, Statements, TableParam, Token,
};
use crate::driver::{Driver, Value};
use crate::releases::{self, ReleaseFeed};
use crate::schema;
use crate::statements::{Tables, statements};
use crate::table::{TableName, acquisition_locked_by, check_lock_name, holder_of};

mod admin;
mod kinds;
mod runs;
mod runtimes;

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
    pub(crate) fn into_error<D: Dialect>(
        self,
        server: &str,
        action: impl Into<String>,
        consequence: &str,
    ) -> LockError {
        let failure = StoreFailure {
            store: D::STORE,
            action: action.into(),
            what_happened: format!("{} at {server}: {}", D::TITLE, self.what_happened),
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
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn connect_error<D: Dialect>(server: &str, err: sqlx::Error) -> LockError {
    Failure::of(err).into_error::<D>(
        server,
        "connecting",
        "check that the server runs there, that the URL's user, password and database are \
         right, and, where the server requires TLS, the URL's TLS settings (sslmode=require \
         on PostgreSQL, ssl-mode=REQUIRED on MySQL; feature `tls`)",
    )
}

/// How long a lock operation waits for a connection of the provider's own
/// pool, opening a new one included. While the server is down (refusing
/// connections) or restarting, operations fail after this with a clear error
/// instead of hanging, and one that waits while the server comes back gets a
/// connection as soon as it accepts one.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection of the provider's own pool may stay idle: below the
/// limits servers and the network put on idle sessions (PostgreSQL
/// `idle_session_timeout`, MySQL `wait_timeout`, NAT and load-balancer idle
/// timeouts of 4-6 minutes that drop a connection without a word), so a
/// connection is closed here before it can die there. The pool checks every
/// minute: a connection is closed after 60-120 s of idleness.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection of the provider's own pool lives at most, however
/// busy: a server that still answers but should no longer be used (the
/// previous primary after a failover moved its DNS name) is left within this.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The settings of the pools the providers make (`connect`): a few
/// connections, each pinged right before use, so one the server closed
/// (an idle-session limit, a restart) is replaced there, before a lock
/// statement is sent on it; idle ones closed before the server or the
/// network does; a short wait for a connection.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn pool_options<DB: Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(4)
        .test_before_acquire(true)
        .idle_timeout(IDLE_TIMEOUT)
        .max_lifetime(MAX_LIFETIME)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// The settings of a connection to `url`.
pub(crate) fn parse_url<D: Dialect>(url: &str) -> Result<ConnectOptionsOf<D>, LockError> {
    url.parse().map_err(|err| {
        LockError::InvalidConfiguration(format!(
            "the {} URL is not valid ({err}); expected {}",
            D::TITLE,
            D::URL_SHAPE
        ))
    })
}

/// A pool of [`pool_options`] connected to the server of `url`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) async fn connect<D: Dialect>(url: &str) -> Result<Pool<D::Db>, LockError> {
    let options = parse_url::<D>(url)?;
    let server = D::server(&options);
    pool_options()
        .connect_with(options)
        .await
        .map_err(|err| connect_error::<D>(&server, err))
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
fn warn_if_unchecked<DB: Database>(pool: &Pool<DB>, store: &'static str, server: &str) {
    if !pool.options().get_test_before_acquire() {
        tracing::warn!(
            store, %server,
            "the pool does not check connections before use (test_before_acquire(false)): a \
             connection the server closed while idle will fail the next lock operation; build \
             the pool from the provider's pool_options(), or keep test_before_acquire(true)"
        );
    }
}

/// The timeout of statements whose caller bounds the whole (an
/// acquisition, see `InFlight`): no timer of their own.
const UNBOUNDED: Duration = Duration::MAX;

/// Waits up to `timeout` for a statement's answer ([`UNBOUNDED`]: as long
/// as it takes). A timeout or a broken connection after it was sent leaves
/// open whether it ran.
pub(crate) async fn answer<T>(
    timeout: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Failure> {
    let answered = if timeout == UNBOUNDED {
        Ok(statement.await)
    } else {
        tokio::time::timeout(timeout, statement).await
    };
    match answered {
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

/// The lock operations on one pool, written once: the dialect `D` gives
/// the statements, their parameters' order and the durations' encoding.
pub(crate) struct SqlEngine<D: Dialect> {
    pool: Pool<D::Db>,
    /// Server connections of a runtime that is gone are closed before use.
    runtimes: runtimes::RuntimeWatch,
}

impl<D: Dialect> SqlEngine<D> {
    /// A connection of the pool within `timeout`. From an SQLite file's
    /// pool, an idle connection is taken at once, without the pool's check
    /// (a round trip to the connection's worker thread) or a timer: there is
    /// no server that could have closed it.
    pub(crate) async fn checkout(
        &self,
        timeout: Duration,
    ) -> Result<PoolConnection<D::Db>, Failure> {
        if !D::SERVER {
            if let Some(connection) = self.pool.try_acquire() {
                return Ok(connection);
            }
        } else if self.runtimes.left_a_gone_runtime() {
            // Idle ones only: taken without the ping, and closed unused.
            while let Some(connection) = self.pool.try_acquire() {
                drop(connection.detach());
            }
        }
        checkout(&self.pool, timeout).await
    }

    /// The rows `statement` answers for `name` (every name when empty),
    /// each read by `read`.
    pub(crate) async fn fetch_rows<T>(
        &self,
        statement: &Statement<LeaseParam>,
        name: &str,
        timeout: Duration,
        read: impl Fn(&<D::Db as Database>::Row) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let values = LeaseParams::<D>::of_name(name).of(statement);
        let rows = answer(
            timeout,
            D::Db::fetch_all(&mut connection, &statement.sql, values),
        )
        .await?;
        drop(connection);
        rows.iter()
            .map(read)
            .collect::<Result<_, _>>()
            .map_err(Failure::of)
    }

    /// The names of the columns of `table`; none when there is no such table.
    async fn columns(&self, table: &TableName, timeout: Duration) -> Result<Vec<String>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let columns = D::columns();
        let qualified = table.to_string();
        let values = columns.values(|param| match param {
            TableParam::Qualified => Value::Str(&qualified),
            TableParam::Schema => Value::OptionalStr(table.schema()),
            TableParam::Table => Value::Str(table.table()),
        });
        let rows = answer(
            timeout,
            D::Db::fetch_all(&mut connection, &columns.sql, values),
        )
        .await?;
        rows.iter()
            .map(|row| D::Db::text(row, 0).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::of)
    }

    /// Runs `create` (`CREATE TABLE IF NOT EXISTS` of `table`).
    async fn create_table(
        &self,
        table: &TableName,
        create: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut connection = self.checkout(timeout).await?;
        let created = answer(timeout, D::Db::execute_unprepared(&mut connection, create)).await;
        drop(connection);
        match created {
            Ok(_) => Ok(()),
            // Processes creating it at once: one of them may lose a race in
            // the catalog (PostgreSQL's unique violation on pg_type), yet
            // the table is there.
            Err(failure) => match self.columns(table, timeout).await {
                Ok(columns) if !columns.is_empty() => Ok(()),
                _ => Err(failure),
            },
        }
    }

    /// Takes `lease.name` for `lease` if its lease has ended (or it has no row
    /// yet) and its capacity (stored, else `default_capacity`) is not 0;
    /// `Ok(Some(token))`: taken, `Ok(None)`: held or paused. `timeout` bounds
    /// the wait for each answer (the exclusive statement's; [`UNBOUNDED`]
    /// where the caller bounds the whole). A shared lease is taken as
    /// `acquire_shared` says, each of its statements bounded by
    /// `statement_timeout`, as is its transaction on the server's side.
    async fn acquire(
        &self,
        connection: &mut PoolConnection<D::Db>,
        statements: &Statements,
        lease: &LeaseRow,
        (lock_at_most_for, default_capacity): (Duration, Option<u32>),
        (timeout, statement_timeout): (Duration, Duration),
    ) -> Result<Option<u64>, Failure> {
        if lease.permits.is_some() {
            let defaults = (lock_at_most_for, default_capacity);
            return self
                .acquire_shared(connection, statements, lease, defaults, statement_timeout)
                .await;
        }
        let params = LeaseParams::<D> {
            lock_at_most_for,
            // Exclusive holders take the whole lock: only a capacity of 0 (paused) matters.
            capacity: default_capacity.unwrap_or(1),
            ..LeaseParams::of_lease(lease)
        };
        for step in &statements.acquire {
            match step {
                Acquire::Returning(statement) => {
                    let row = answer(
                        timeout,
                        D::Db::fetch_optional(connection, &statement.sql, params.of(statement)),
                    )
                    .await?;
                    if row.is_some() {
                        return taken(token_of::<D>(row));
                    }
                }
                Acquire::Counting(statement, token) => {
                    let done = answer(
                        timeout,
                        D::Db::execute(connection, &statement.sql, params.of(statement)),
                    )
                    .await?;
                    let counts = D::counts(&done);
                    if counts.rows_affected != 1 {
                        continue;
                    }
                    return match token {
                        Token::LastInsertId => {
                            taken(Ok(i64::try_from(counts.last_insert_id).unwrap_or(i64::MAX)))
                        }
                        // The lock is taken: a lost token must release it.
                        Token::Clock(clock) => {
                            let row = answer(
                                timeout,
                                D::Db::fetch_optional(connection, clock, Vec::new()),
                            )
                            .await
                            .map_err(|failure| Failure {
                                unanswered: true,
                                ..failure
                            })?;
                            taken(token_of::<D>(row))
                        }
                    };
                }
            }
        }
        Ok(None)
    }

    /// How long the current lease of `name` has left (zero once ended);
    /// `None` when there is no row.
    async fn lease_left(
        &self,
        statements: &Statements,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<Duration>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let statement = &statements.lease_left;
        let values = LeaseParams::<D>::of_name(name).of(statement);
        let row = answer(
            timeout,
            D::Db::fetch_optional(&mut connection, &statement.sql, values),
        )
        .await?;
        let left = row
            .map(|row| D::Db::int(&row, 0))
            .transpose()
            .map_err(Failure::of)?;
        Ok(left.flatten().map(|left| D::DURATIONS.decode(left)))
    }

    /// Runs `statement` of `lease` on a connection of its own; true when it
    /// matched the lease's row (still this lease's and live).
    async fn update(
        &self,
        statement: &Statement<LeaseParam>,
        params: LeaseParams<'_, D>,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let mut connection = self.checkout(timeout).await?;
        // MySQL's client counts matched rows (CLIENT_FOUND_ROWS), not changed ones.
        Ok(kinds::execute::<D>(&mut connection, statement, &params, timeout).await? == 1)
    }

    /// Sets `lock_until = LEAST(lock_until, GREATEST(locked_at +
    /// lock_at_least_for, now + keep_for))` if the lease is `lease`'s and has not ended.
    async fn release(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        keep_for: Duration,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        if lease.permits.is_some() {
            return self
                .release_shared(statements, lease, keep_for, None, timeout)
                .await;
        }
        let params = LeaseParams {
            keep_for,
            ..LeaseParams::of_lease(lease)
        };
        self.update(&statements.release, params, timeout).await
    }
}

/// The token in the first column of `row`.
fn token_of<D: Dialect>(row: Option<<D::Db as Database>::Row>) -> Result<i64, sqlx::Error> {
    let row = row.ok_or(sqlx::Error::RowNotFound)?;
    D::Db::int(&row, 0)?.ok_or_else(|| sqlx::Error::Decode("the token is NULL".into()))
}

/// The one parameter map of the lease statements (ShedLock's shape): each
/// statement takes from it what its placeholders ask, in its own order.
struct LeaseParams<'a, D> {
    name: &'a str,
    locked_by: &'a str,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
    keep_for: Duration,
    /// An operator's capacity, or an acquisition's default one.
    capacity: u32,
    /// How long a pruned lock has not been used, at least.
    unused_for: Duration,
    /// `locked_by` without the acquisition's id.
    holder: &'a str,
    /// The recorded run: how long it took, how it ended, its token.
    run_millis: i64,
    outcome: &'static str,
    run_token: Option<i64>,
    /// A shared holder's permits and token.
    permits: u32,
    holder_token: Option<i64>,
    /// An exclusive waiter and how long its place lasts.
    waiter: &'a str,
    hold_place_for: Duration,
    dialect: PhantomData<D>,
}

impl<'a, D: Dialect> LeaseParams<'a, D> {
    /// The map of `row`'s statements, with no durations yet.
    fn of_lease(row: &'a LeaseRow) -> Self {
        LeaseParams {
            locked_by: &row.locked_by,
            holder: holder_of(&row.locked_by),
            lock_at_least_for: row.lock_at_least_for,
            ..Self::of_name(&row.name)
        }
    }

    /// The map of a statement on `name`, whoever holds it.
    fn of_name(name: &'a str) -> Self {
        LeaseParams {
            name,
            locked_by: "",
            lock_at_most_for: Duration::ZERO,
            lock_at_least_for: Duration::ZERO,
            keep_for: Duration::ZERO,
            capacity: 1,
            unused_for: Duration::MAX,
            holder: "",
            run_millis: 0,
            outcome: "",
            run_token: None,
            permits: 1,
            holder_token: None,
            waiter: "",
            hold_place_for: Duration::ZERO,
            dialect: PhantomData,
        }
    }

    /// The map of `row`'s statements recording `run`.
    fn of_run(row: &'a LeaseRow, run: &FinishedRun) -> Self {
        LeaseParams {
            run_millis: i64::try_from(run.duration.as_millis()).unwrap_or(i64::MAX),
            outcome: run.outcome.as_str(),
            run_token: run
                .fencing_token
                .and_then(|token| i64::try_from(token).ok()),
            ..Self::of_lease(row)
        }
    }

    /// The values of `statement`'s parameters, in its order.
    fn of(&self, statement: &Statement<LeaseParam>) -> Vec<Value<'a>> {
        statement.values(|param| match param {
            LeaseParam::Name => Value::Str(self.name),
            LeaseParam::LockedBy => Value::Str(self.locked_by),
            LeaseParam::LockAtMostFor => D::DURATIONS.encode(self.lock_at_most_for),
            LeaseParam::LockAtLeastFor => D::DURATIONS.encode(self.lock_at_least_for),
            LeaseParam::KeepFor => D::DURATIONS.encode(self.keep_for),
            LeaseParam::Capacity => Value::Int(i64::from(self.capacity)),
            LeaseParam::UnusedFor => D::DURATIONS.encode(self.unused_for),
            LeaseParam::Holder => Value::Str(self.holder),
            LeaseParam::RunMillis => Value::Int(self.run_millis),
            LeaseParam::Outcome => Value::Str(self.outcome),
            LeaseParam::RunToken => Value::OptionalInt(self.run_token),
            LeaseParam::Permits => Value::Int(i64::from(self.permits)),
            LeaseParam::HolderToken => Value::OptionalInt(self.holder_token),
            LeaseParam::Waiter => Value::Str(self.waiter),
            LeaseParam::HoldPlaceFor => D::DURATIONS.encode(self.hold_place_for),
        })
    }
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

    /// Creates the lock table and its companion settings and runs tables,
    /// each if missing.
    pub(crate) async fn create_table_if_missing(&self) -> Result<(), LockError> {
        let tables = std::iter::once((self.table.clone(), &schema::LOCK_TABLE))
            .chain(schema::companions(&self.table));
        for (table, shape) in tables {
            let create = shape.ddl::<D>(&table);
            let what = shape.what;
            self.engine
                .create_table(&table, &create, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error::<D>(
                        &self.server,
                        format!("creating the {what} '{table}'"),
                        &format!(
                            "create it by hand (the README gives the DDL of each database), or \
                             grant CREATE to this user; this database's DDL: {create}"
                        ),
                    )
                })?;
        }
        let (settings, runs) = (self.table.settings(), self.table.runs());
        let (holders, waiters) = (self.table.holders(), self.table.waiters());
        tracing::info!(
            table = %self.table, %settings, %runs, %holders, %waiters, store = D::STORE,
            "lock tables present"
        );
        Ok(())
    }

    /// Whether this provider hands out fencing tokens from the `fencing_token`
    /// column (detecting the column now if it was not configured).
    pub(crate) async fn uses_fencing_column(&self) -> Result<bool, LockError> {
        Ok(self.prepared().await?.fencing)
    }

    /// The statements, made once the tables are checked: all exist with
    /// the columns the statements use (a clear error naming the DDL
    /// otherwise), and the fencing column is detected if not configured.
    async fn prepared(&self) -> Result<&Prepared, LockError> {
        self.prepared
            .get_or_try_init(|| async {
                let tables = self.check_tables().await?;
                match tables.gap {
                    Some(gap) => Err(gap),
                    None => Ok(self.prepare(tables.fencing)),
                }
            })
            .await
    }

    /// For calls that need only the lock table (a force-release): the
    /// statements of [`prepared`](Self::prepared) when every table is
    /// there, else statements made for this call (so companion tables
    /// created later are used), on ShedLock for Java's table alone too.
    async fn lock_table_statements(&self) -> Result<LockTableStatements, LockError> {
        let complete = |prepared: &Prepared| LockTableStatements {
            statements: prepared.statements.clone(),
            holders: true,
        };
        if let Some(prepared) = self.prepared.get() {
            return Ok(complete(prepared));
        }
        let tables = self.check_tables().await?;
        if tables.gap.is_none() {
            let prepared = self.prepare(tables.fencing);
            let statements = complete(&prepared);
            // Another call may have made them meanwhile: the same statements.
            let _ = self.prepared.set(prepared);
            return Ok(statements);
        }
        tracing::debug!(
            table = %self.table, store = D::STORE, holders = tables.holders,
            "companion tables missing; statements for the lock table alone"
        );
        Ok(LockTableStatements {
            statements: Arc::new(statements::<D>(&Tables::of(&self.table, tables.fencing))),
            holders: tables.holders,
        })
    }

    /// The statements of the table, with or without the fencing column.
    fn prepare(&self, fencing: bool) -> Prepared {
        tracing::debug!(
            table = %self.table, store = D::STORE, fencing,
            "lock table statements prepared"
        );
        Prepared {
            fencing,
            statements: Arc::new(statements::<D>(&Tables::of(&self.table, fencing))),
        }
    }

    /// Checks the lock table (an error when it is missing or lacks
    /// ShedLock's columns, or the catalog cannot be read) and its
    /// companions (whose first gap is kept in `gap`), and detects the
    /// fencing column if it was not configured.
    async fn check_tables(&self) -> Result<CheckedTables, LockError> {
        let lock = &schema::LOCK_TABLE;
        let columns = self
            .checked_columns(&self.table, &lock.required(), lock.ddl::<D>(&self.table))
            .await??;
        let fencing = self
            .fencing
            .unwrap_or_else(|| columns.iter().any(|column| D::is_fencing_column(column)));
        let mut checked = CheckedTables {
            fencing,
            holders: true,
            gap: None,
        };
        for (table, shape) in schema::companions(&self.table) {
            let ddl = shape.ddl::<D>(&table);
            if let Err(gap) = self.checked_columns(&table, &shape.required(), ddl).await? {
                if std::ptr::eq(shape, &schema::HOLDERS_TABLE) {
                    checked.holders = false;
                }
                checked.gap.get_or_insert(gap);
            }
        }
        Ok(checked)
    }

    /// The columns of `table`, once it is known to exist with `required`;
    /// otherwise (the inner error) an error that says what is missing and
    /// gives `ddl`. The outer error: the catalog could not be read.
    async fn checked_columns(
        &self,
        table: &TableName,
        required: &[&str],
        ddl: String,
    ) -> Result<Result<Vec<String>, LockError>, LockError> {
        let action = || format!("looking up the columns of the table '{table}'");
        let columns = self
            .engine
            .columns(table, self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error::<D>(&self.server, action(), "nothing was done")
            })?;
        let missing: Vec<&str> = required
            .iter()
            .filter(|wanted| {
                !columns
                    .iter()
                    .any(|column| column.eq_ignore_ascii_case(wanted))
            })
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(Ok(columns));
        }
        let (what_happened, consequence) = if columns.is_empty() {
            (
                format!("there is no table '{table}'"),
                format!(
                    "call create_table_if_missing() once at startup, or create it with the DDL \
                     in the README: {ddl}"
                ),
            )
        } else {
            (
                format!("the table '{table}' has no column {}", missing.join(", ")),
                format!(
                    "it is not the table shedlock uses: give another table name, or alter it \
                     to match the DDL in the README: {ddl}"
                ),
            )
        };
        Ok(Err(StoreFailure {
            store: D::STORE,
            action: action(),
            what_happened: format!("{} at {}: {what_happened}", D::TITLE, self.server),
            consequence,
        }
        .into()))
    }

    pub(crate) async fn try_lock(
        &self,
        config: &LockConfiguration,
    ) -> Result<Option<LockGuard>, LockError> {
        self.try_lock_as(config, None).await
    }

    /// As `try_lock`, for `waiter` if given: taking the lock takes it out
    /// of the queue if it had queued, beside its run (the lease's release
    /// waits for that), so the hand-off to it costs no statement more.
    async fn try_lock_as(
        &self,
        config: &LockConfiguration,
        waiter: Option<&shedlock_core::Waiter>,
    ) -> Result<Option<LockGuard>, LockError> {
        check_lock_name(config.name())?;
        let prepared = self.prepared().await?;
        let action = || format!("acquiring lock '{}'", config.name());
        let mut connection = self
            .engine
            .checkout(self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error::<D>(&self.server, action(), "the lock was not taken")
            })?;
        let lease = Arc::new(SqlLease {
            engine: self.engine.clone(),
            statements: prepared.statements.clone(),
            server: self.server.clone(),
            releases: self.releases.clone(),
            timeout: self.timeout,
            history: self.run_history,
            dequeuing: std::sync::Mutex::new(None),
            row: LeaseRow {
                name: config.shared_name().clone(),
                locked_by: acquisition_locked_by(&self.locked_by),
                lock_at_least_for: config.lock_at_least_for(),
                permits: config.mode().permits(),
            },
        });
        let lock_at_most_for = config.lock_at_most_for();
        let default_capacity = config.capacity();
        // The statements keep running after this call stops waiting for
        // them (timeout, or this future dropped): their answer then still
        // comes back to a task, which releases whatever they took. No
        // guessing. Bounded as a whole here, by `answer_within`, and in that
        // task: no timer of their own.
        let requested_at = Instant::now();
        let deadline = requested_at + lock_at_most_for;
        let running = lease.clone();
        let mut acquisition = InFlight::<D> {
            running: Some(Box::pin(async move {
                let reply = running
                    .engine
                    .acquire(
                        &mut connection,
                        &running.statements,
                        &running.row,
                        (lock_at_most_for, default_capacity),
                        (UNBOUNDED, running.timeout),
                    )
                    .await;
                drop(connection);
                reply
            })),
            lease: lease.clone(),
            in_flight: lock_at_most_for.min(MAX_IN_FLIGHT).max(self.timeout),
            deadline,
        };
        match acquisition.answer_within(self.timeout).await {
            Some(Ok(Some(token))) => {
                if let Some(waiter) = waiter
                    && self.queued.take(waiter)
                {
                    lease.dequeue(waiter.id().to_owned());
                }
                Ok(GrantedLease::new(config, token, requested_at, lease)
                    .vouch()
                    .await)
            }
            Some(Ok(None)) => {
                self.hint_lease_end(&prepared.statements, config.name())
                    .await;
                Ok(None)
            }
            Some(Err(failure)) if failure.unanswered => {
                // The error names the kind; the driver's own words go to the log.
                let reason = format!("{} at {}: {}", D::TITLE, self.server, failure.what_happened);
                if let Some(cause) = &failure.cause {
                    tracing::debug!(lock = %config.name(), error = %cause, "the acquisition's answer was lost");
                }
                Err(release_uncertain_acquisition(lease, deadline, reason).await)
            }
            Some(Err(failure)) => {
                Err(failure.into_error::<D>(&self.server, action(), "the lock was not taken"))
            }
            None => {
                let reason = format!(
                    "{} at {} did not answer within {:?}",
                    D::TITLE,
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

    /// As `try_lock`; a failed exclusive attempt queues `waiter`, so new
    /// shared holders stay out until it has had its turn, and a successful
    /// one takes it out of the queue (if it had queued).
    pub(crate) async fn try_lock_waiting(
        &self,
        config: &LockConfiguration,
        waiter: &shedlock_core::Waiter,
    ) -> Result<Option<LockGuard>, LockError> {
        if config.mode() != shedlock_core::LockMode::Exclusive {
            return self.try_lock(config).await;
        }
        let acquired = self.try_lock_as(config, Some(waiter)).await?;
        if acquired.is_none() {
            let statements = &self.prepared().await?.statements;
            let name = config.name();
            match self
                .engine
                .queue(statements, name, waiter, self.timeout)
                .await
            {
                Ok(()) => self.queued.queued(waiter),
                // The attempt's answer stands; shared holders may go first this time.
                Err(failure) => tracing::warn!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot queue the exclusive waiter; new shared holders may go first"
                ),
            }
        }
        Ok(acquired)
    }

    /// Tells this process's waiters on `name`, if any, when its holder's
    /// lease ends, so they try again then rather than at their next poll.
    /// One more statement, only for a name somebody here waits for.
    async fn hint_lease_end(&self, statements: &Statements, name: &str) {
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

    /// A watch on releases of `name`, heard from this process and, where
    /// the database announces them, from others (listening from now on).
    pub(crate) async fn watch_releases(&self, name: &str) -> ReleaseWatch {
        let watch = self.releases.watch(name);
        if let Some(feed) = &self.feed {
            feed.listen().await;
        }
        watch
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

/// Statements of one table, with the fencing mode they were made for.
struct Prepared {
    fencing: bool,
    statements: Arc<Statements>,
}

/// What `check_tables` found.
struct CheckedTables {
    fencing: bool,
    /// Whether the shared holders' table is there with its columns.
    holders: bool,
    /// Why a companion table cannot be used (missing, or without a column
    /// the statements use), for the first such table.
    gap: Option<LockError>,
}

/// The statements of a lock table for calls that need no companion table.
pub(crate) struct LockTableStatements {
    pub(crate) statements: Arc<Statements>,
    /// Whether the shared holders' table is there (ShedLock for Java's
    /// table alone has none, nor any holder to end).
    pub(crate) holders: bool,
}

type Answer = Result<Option<u64>, Failure>;

/// An acquisition's statements and the lease they may take, run by the
/// caller while it waits for them (no task of their own, no thread hop).
/// Dropped before its answer (the caller timed out, or its future was
/// dropped), it hands them to a task that awaits the answer and releases
/// whatever they took.
struct InFlight<D: Dialect> {
    running: Option<Pin<Box<dyn Future<Output = Answer> + Send>>>,
    /// The lease the statements may take.
    lease: Arc<SqlLease<D>>,
    /// How long the task awaits the answer; past it, the statements are
    /// given up as unanswered.
    in_flight: Duration,
    /// When a lease the acquisition takes ends at the latest.
    deadline: Instant,
}

impl<D: Dialect> InFlight<D> {
    /// The answer, if it comes within `timeout`.
    async fn answer_within(&mut self, timeout: Duration) -> Option<Answer> {
        let running = self.running.as_mut()?;
        let answer = tokio::time::timeout(timeout, running).await.ok()?;
        self.running = None;
        Some(answer)
    }
}

impl<D: Dialect> Drop for InFlight<D> {
    fn drop(&mut self) {
        if let Some(running) = self.running.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (lease, in_flight, deadline) = (self.lease.clone(), self.in_flight, self.deadline);
            runtime.spawn(async move {
                let reply = tokio::time::timeout(in_flight, running)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure {
                            unanswered: true,
                            what_happened: format!("no answer within {in_flight:?}"),
                            cause: None,
                        })
                    });
                settle_abandoned_acquisition(reply, lease, deadline).await;
            });
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
async fn release_uncertain_acquisition<D: Dialect>(
    lease: Arc<SqlLease<D>>,
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
        BackgroundRelease::possibly_taken(name.clone(), lease, deadline).spawn();
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
async fn settle_abandoned_acquisition<D: Dialect>(
    reply: Result<Option<u64>, Failure>,
    lease: Arc<SqlLease<D>>,
    deadline: Instant,
) {
    let name = lease.row.name.clone();
    let release = match reply {
        Ok(Some(_)) => BackgroundRelease::held(name, lease, deadline),
        Err(failure) if failure.unanswered => {
            BackgroundRelease::possibly_taken(name, lease, deadline)
        }
        Ok(None) | Err(_) => return,
    };
    release.run().await;
}

/// One acquisition's lease: its row, found by name and unique `locked_by`.
struct SqlLease<D: Dialect> {
    engine: Arc<SqlEngine<D>>,
    statements: Arc<Statements>,
    server: Arc<str>,
    releases: Arc<ReleaseNotifiers>,
    timeout: Duration,
    /// Whether a release after a run records it.
    history: bool,
    /// The holder's place in the exclusive waiters' queue being given up
    /// (see `SqlLocks::try_lock_as`); released after it.
    dequeuing: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    row: LeaseRow,
}

impl<D: Dialect> Lease for SqlLease<D> {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            self.engine
                .extend(&self.statements, &self.row, lock_at_most_for, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error::<D>(
                        &self.server,
                        format!("extending lock '{}'", self.row.name),
                        "the lease still ends at its previous end",
                    )
                })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(self.release_with(keep_for, None))
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(self.release_with(keep_for, self.history.then_some(run)))
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            if !self.history {
                return Ok(());
            }
            self.engine
                .record_run(&self.statements, &self.row, run, self.timeout)
                .await
                .map_err(|failure| {
                    failure.into_error::<D>(
                        &self.server,
                        format!("recording a lost run of lock '{}'", self.row.name),
                        "the run is missing from the lock's history",
                    )
                })
        })
    }
}

impl<D: Dialect> SqlLease<D> {
    /// Takes the exclusive waiter `waiter`, now this lease's holder, out of
    /// the queue, in a task of its own.
    fn dequeue(&self, waiter: String) {
        let (engine, statements) = (self.engine.clone(), self.statements.clone());
        let (name, timeout) = (self.row.name.clone(), self.timeout);
        let task = tokio::spawn(async move {
            if let Err(failure) = engine.dequeue(&statements, &name, &waiter, timeout).await {
                tracing::debug!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot take the waiter out of the queue; its place lapses by itself"
                );
            }
        });
        *self
            .dequeuing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(task);
    }

    /// Releases the lease, recording `run` in the same transaction if given.
    async fn release_with(
        &self,
        keep_for: Duration,
        run: Option<&FinishedRun>,
    ) -> Result<bool, LockError> {
        // Out of the queue first, so the place never outlives the lease.
        let dequeuing = self
            .dequeuing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = dequeuing {
            let _ = task.await;
        }
        let released = match run {
            Some(run) => {
                self.engine
                    .release_after_run(&self.statements, &self.row, keep_for, run, self.timeout)
                    .await
            }
            None => {
                self.engine
                    .release(&self.statements, &self.row, keep_for, self.timeout)
                    .await
            }
        }
        .map_err(|failure| {
            failure.into_error::<D>(
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
    #[cfg(feature = "postgres")]
    fn a_statement_error_names_its_kind_and_keeps_sqlx_words_in_the_source() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let failure = Failure::of(sqlx::Error::Io(refused));
        let err = failure.into_error::<crate::postgres::PgDialect>(
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
