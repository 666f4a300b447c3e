//! The pool: its settings, connecting, and checking out a connection.

use std::time::{Duration, Instant};

use shedlock_core::LockError;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::dialect::{ConnectOptionsOf, Dialect};

use super::*;

/// How long a lock operation waits for a connection of the provider's own
/// pool, opening a new one included. While the server is down (refusing
/// connections) or restarting, operations fail after this with a clear error
/// instead of hanging, and one that waits while the server comes back gets a
/// connection as soon as it accepts one.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection of the provider's own pool may stay idle: below the
/// limits servers and the network put on idle sessions (PostgreSQL
/// `idle_session_timeout`, MySQL `wait_timeout`, NAT and load-balancer idle
/// timeouts of 4-6 minutes that drop a connection without a word), so a
/// connection is closed here before it can die there. The pool checks every
/// minute: a connection is closed after 60-120 s of idleness.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection of the provider's own pool lives at most, however
/// busy: a server that still answers but should no longer be used (the
/// previous primary after a failover moved its DNS name) is left within this.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);

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

/// A connection of the pool, for one lock operation.
///
/// One whose operation was cut off while a transaction's `BEGIN` was
/// unanswered (its timeout, or a caller that gave up: a `select!`, a
/// shutdown stopping a renewal) is closed instead of going back to the pool.
/// The driver counts a transaction only once `BEGIN` is answered, so that
/// connection would go back inside a transaction nobody ends: the next
/// operation's statements would look done (a release answering "released")
/// and never be committed, and their row locks would keep other replicas
/// waiting until the session ended.
pub(crate) struct Checkout<DB: Database> {
    connection: PoolConnection<DB>,
    /// Set from sending a transaction's first statement until its answer.
    beginning: bool,
}

impl<DB: Database> Checkout<DB> {
    pub(super) fn new(connection: PoolConnection<DB>) -> Self {
        Checkout {
            connection,
            beginning: false,
        }
    }

    /// The connection, and the flag an unanswered `BEGIN` leaves set.
    pub(super) fn parts(&mut self) -> (&mut PoolConnection<DB>, &mut bool) {
        (&mut self.connection, &mut self.beginning)
    }
}

impl<DB: Database> std::ops::Deref for Checkout<DB> {
    type Target = PoolConnection<DB>;

    fn deref(&self) -> &PoolConnection<DB> {
        &self.connection
    }
}

impl<DB: Database> std::ops::DerefMut for Checkout<DB> {
    fn deref_mut(&mut self) -> &mut PoolConnection<DB> {
        &mut self.connection
    }
}

impl<DB: Database> Drop for Checkout<DB> {
    fn drop(&mut self) {
        if self.beginning {
            tracing::debug!("a transaction's BEGIN went unanswered: its connection is closed");
            self.connection.close_on_drop();
        }
    }
}

/// Takes a connection from the pool within `timeout`. Nothing was sent yet,
/// so a failure here is certain.
pub(crate) async fn checkout<DB: Database>(
    pool: &Pool<DB>,
    timeout: Duration,
) -> Result<Checkout<DB>, Failure> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, pool.acquire()).await {
        Ok(Ok(connection)) => Ok(Checkout::new(connection)),
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
pub(super) fn no_connection<DB: Database>(pool: &Pool<DB>, waited: Duration) -> String {
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
pub(super) fn warn_if_unchecked<DB: Database>(pool: &Pool<DB>, store: &'static str, server: &str) {
    if !pool.options().get_test_before_acquire() {
        tracing::warn!(
            store, %server,
            "the pool does not check connections before use (test_before_acquire(false)): a \
             connection the server closed while idle will fail the next lock operation; build \
             the pool from the provider's pool_options(), or keep test_before_acquire(true)"
        );
    }
}
