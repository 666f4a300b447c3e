//! One connection type for every deployment: a standalone server, a Redis
//! Cluster, or the master that Sentinel names, each made again after a
//! failure. Scripts and leases run on it unchanged, and a command
//! that meets a closed connection is sent again on a fresh one.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// How often one command is sent again after its connection turned out
/// closed: once for a connection the server closed while idle, once more for
/// a second one closed while the first was replaced.
const MAX_RESENDS: u32 = 2;

/// Keys looked at per `SCAN` step.
const SCAN_COUNT: usize = 500;

/// A cheaply cloned, multiplexed connection to Redis.
///
/// Every command shedlock sends is safe to send twice: acquisitions carry a
/// value unique to the attempt, so a resent `SET .. NX .. GET` or acquisition
/// script recognises its own lease; release and extension compare that value
/// first; a second `INCR` of a fencing counter only raises it; the operators'
/// commands set absolute states. So a command whose connection was found
/// closed (by an idle timeout, a load balancer, `CLIENT KILL`, or a runtime
/// that is gone) is sent again on a fresh connection instead of failing the
/// lock operation: whether or not the first copy reached the server, the
/// outcome is the same.
///
/// A standalone server and Sentinel's master are one multiplexed connection
/// each, made again after a failure (not a `ConnectionManager`: it keeps a
/// connection attempt that failed for any reason but I/O, such as rejected
/// credentials, and fails every later command until the process restarts).
#[derive(Clone)]
pub(crate) enum RedisConnection {
    Single(Arc<Renewing<MultiplexedConnection>>),
    Cluster(Arc<Renewing<ClusterConnection>>),
}

impl RedisConnection {
    /// A standalone server; connects before returning.
    pub(crate) async fn standalone(
        client: redis::Client,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let renewing = Renewing::new(move || {
            let (client, config) = (client.clone(), config.clone());
            Box::pin(async move {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            })
        });
        renewing.current().await?;
        Ok(RedisConnection::Single(Arc::new(renewing)))
    }

    /// A Redis Cluster; connects before returning.
    pub(crate) async fn cluster(client: ClusterClient) -> RedisResult<Self> {
        let renewing = Renewing::new(move || {
            let client = client.clone();
            Box::pin(async move { client.get_async_connection().await })
        });
        renewing.current().await?;
        Ok(RedisConnection::Cluster(Arc::new(renewing)))
    }

    /// The master Sentinel names, looked up again after a connection failure
    /// (so a failover is followed); connects before returning.
    pub(crate) async fn sentinel(
        sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let renewing = Renewing::new(move || {
            let (sentinel, config) = (sentinel.clone(), config.clone());
            Box::pin(async move {
                let master = sentinel.lock().await.async_get_client().await?;
                master
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            })
        });
        renewing.current().await?;
        Ok(RedisConnection::Single(Arc::new(renewing)))
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// Sends `cmd` to the node `routing` names (a cluster's operator
    /// commands: `CLUSTER SLOTS`, `SCAN` per master); elsewhere to the server.
    pub(crate) async fn route(&self, cmd: &Cmd, routing: &RoutingInfo) -> RedisResult<Value> {
        match self {
            RedisConnection::Cluster(cluster) => {
                resending(|| {
                    cluster.send(|mut c| async move {
                        c.route_command(cmd.clone(), routing.clone()).await
                    })
                })
                .await
            }
            _ => cmd.query_async(&mut self.clone()).await,
        }
    }

    /// Every key matching `pattern` on one node (`None`: the server this
    /// connection sends to), `SCAN` step by `SCAN` step.
    pub(crate) async fn scan_node(
        &self,
        pattern: &str,
        node: Option<RoutingInfo>,
    ) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut command = Cmd::new();
            command
                .arg("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = match &node {
                Some(node) => self.route(&command, node).await,
                None => command.query_async(&mut self.clone()).await,
            };
            let (next, batch): (u64, Vec<String>) =
                reply.and_then(|reply| redis::from_redis_value(reply).map_err(RedisError::from))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The masters of a cluster, as `CLUSTER SLOTS` names them.
    pub(crate) async fn cluster_masters(&self) -> RedisResult<BTreeSet<(String, u16)>> {
        let reply = self
            .route(
                redis::cmd("CLUSTER").arg("SLOTS"),
                &RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .and_then(|reply| {
                // Each range: start, end, its master (ip, port, id, ..), then replicas.
                redis::from_redis_value::<Vec<Vec<redis::Value>>>(reply).map_err(RedisError::from)
            })?;
        Ok(reply
            .into_iter()
            .filter_map(|range| {
                let master = range.into_iter().nth(2)?;
                let mut fields = redis::from_redis_value::<Vec<redis::Value>>(master)
                    .ok()?
                    .into_iter();
                let host = redis::from_redis_value::<String>(fields.next()?).ok()?;
                let port = redis::from_redis_value::<u16>(fields.next()?).ok()?;
                Some((host, port))
            })
            .collect())
    }

    /// One attempt at `cmd`, on the current connection.
    async fn send_once(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            // The connection's own method: its trait method boxes the same
            // future once more, on every command.
            RedisConnection::Single(single) => {
                single
                    .send(|mut c| async move { c.send_packed_command(cmd).await })
                    .await
            }
            RedisConnection::Cluster(cluster) => {
                cluster
                    .send(|mut c| async move { c.req_packed_command(cmd).await })
                    .await
            }
        }
    }

    /// One attempt at a pipeline, on the current connection.
    async fn send_pipeline_once(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            RedisConnection::Single(single) => single
                .send(|mut c| async move { c.send_packed_commands(pipeline, offset, count).await })
                .await,
            RedisConnection::Cluster(cluster) => {
                cluster
                    .send(
                        |mut c| async move { c.req_packed_commands(pipeline, offset, count).await },
                    )
                    .await
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(resending(|| self.send_once(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let this: &'a Self = self;
        Box::pin(resending(move || {
            this.send_pipeline_once(pipeline, offset, count)
        }))
    }

    fn get_db(&self) -> i64 {
        0 // only read by redis-rs's own connection types; the database is chosen at connect
    }
}

/// Runs `attempt`, and again (at most [`MAX_RESENDS`] more times) while it
/// fails because its connection was closed. Each failed attempt has already
/// made [`Renewing`] forget the closed connection, so the next attempt goes
/// out on a new one. Timeouts are not
/// resent: the caller's deadline has passed and it settles the outcome.
async fn resending<T, F, Fut>(mut attempt: F) -> RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let mut resends = 0;
    loop {
        match attempt().await {
            Err(err) if resends < MAX_RESENDS && worth_resending(&err) => {
                resends += 1;
                tracing::debug!(error = %err, resends, "Redis connection closed; sending again on a new one");
            }
            result => return result,
        }
    }
}

/// Whether a fresh connection may take the command: its connection was
/// closed, or it reached a server that a failover made a replica
/// (`READONLY`, which runs nothing; Sentinel then names the new master).
fn worth_resending(err: &RedisError) -> bool {
    connection_closed(err) || err.code() == Some("READONLY")
}

/// Whether `err` says the connection was closed or could not be used (as
/// opposed to a timeout, which may have left the command running, or an
/// answer from the server).
/// With `tls-rustls`, makes ring rustls' process-wide crypto provider
/// unless one is installed already: the Redis client builds its TLS
/// settings from it, and has none when the application's dependencies
/// compile in no provider or more than one.
pub(crate) fn prepare_tls() {
    #[cfg(feature = "tls-rustls")]
    {
        // ring, as sqlx's rustls feature uses: no second C library to build
        // (aws-lc). rustls deprecates it only for lacking post-quantum key
        // exchange. An error only says that a provider was installed first:
        // that one is used.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let _ = provider.install_default();
    }
}

pub(crate) fn connection_closed(err: &RedisError) -> bool {
    err.is_connection_dropped() && !err.is_timeout()
}

/// A connection made again after a failure that leaves it unusable: closed,
/// timed out, rejected, or (Sentinel) on a server that a failover made a
/// replica. A Cluster connection is made again too: its driver task dies with
/// the runtime that spawned it.
pub(crate) struct Renewing<C> {
    connect: Box<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>,
    /// One connection attempt at a time. Callers that waited for a failed
    /// attempt share its error instead of each trying again in turn (with
    /// many tasks and a server that does not answer, that would be a hang).
    connecting: tokio::sync::Mutex<Option<(u64, RedisError)>>,
    /// How many attempts were made, to tell a caller's own from another's.
    attempts: std::sync::atomic::AtomicU64,
    /// The connection and its generation, so a failed call forgets only the
    /// connection it used, not a newer one another call just made.
    current: Mutex<(u64, Option<C>)>,
}

impl<C: Clone + Send + 'static> Renewing<C> {
    fn new(
        connect: impl Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync + 'static,
    ) -> Self {
        Renewing {
            connect: Box::new(connect),
            connecting: tokio::sync::Mutex::new(None),
            attempts: std::sync::atomic::AtomicU64::new(0),
            current: Mutex::new((0, None)),
        }
    }

    async fn current(&self) -> RedisResult<(u64, C)> {
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let seen = self.attempts.load(std::sync::atomic::Ordering::Acquire);
        let mut last_failure = self.connecting.lock().await;
        if let Some(current) = self.cached() {
            return Ok(current); // another call connected while this one waited
        }
        if let Some((attempt, err)) = &*last_failure
            && *attempt > seen
        {
            return Err(err.clone()); // another call just tried, and failed
        }
        let attempt = self
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        match (self.connect)().await {
            Ok(connection) => {
                *last_failure = None;
                let mut current = self.lock_current();
                current.0 += 1;
                current.1 = Some(connection.clone());
                Ok((current.0, connection))
            }
            Err(err) => {
                let err = connect_failure(err);
                *last_failure = Some((attempt, err.clone()));
                Err(err)
            }
        }
    }

    fn cached(&self) -> Option<(u64, C)> {
        let current = self.lock_current();
        current.1.clone().map(|connection| (current.0, connection))
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, (u64, Option<C>)> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn send<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(C) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, connection) = self.current().await?;
        let result = request(connection).await;
        if let Err(err) = &result
            && needs_new_connection(err)
        {
            let mut current = self.lock_current();
            if current.0 == generation {
                current.1 = None;
            }
        }
        result
    }
}

/// A connection attempt that failed, so the command that needed it was
/// never sent. Kept inside an I/O error of the same kind, so the client's
/// own classification (refused, reset, timed out) still reads it.
#[derive(Debug)]
struct ConnectFailed(RedisError);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not connect: {}", self.0)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn connect_failure(err: RedisError) -> RedisError {
    match io_error(&err).map(std::io::Error::kind) {
        Some(kind) => RedisError::from(std::io::Error::new(kind, ConnectFailed(err))),
        None => err, // an answer (credentials refused, LOADING): nothing ran either way
    }
}

/// Whether `err` is a failed connection attempt: the command was not sent.
pub(crate) fn never_sent(err: &RedisError) -> bool {
    io_error(err)
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<ConnectFailed>())
}

/// The I/O error inside `err` (redis-rs keeps it behind an `Arc`).
fn io_error(err: &RedisError) -> Option<&std::io::Error> {
    let source = std::error::Error::source(err)?;
    match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
        Some(shared) => shared.downcast_ref::<std::io::Error>(),
        None => source.downcast_ref::<std::io::Error>(),
    }
}

/// Whether the connection is unusable or points at a server that is no
/// longer the master (a failover made it a read-only replica).
fn needs_new_connection(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
        || err.is_timeout()
        || err.code() == Some("READONLY")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connection_attempt_is_known_to_have_sent_nothing() {
        let reset = || RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let failed = connect_failure(reset());
        assert!(never_sent(&failed));
        assert!(failed.is_connection_dropped(), "{failed:?}");
        assert!(!never_sent(&reset()));
        let refused =
            connect_failure(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert!(refused.is_connection_refusal() && never_sent(&refused));
        let timed_out = connect_failure(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        assert!(timed_out.is_timeout() && never_sent(&timed_out));
    }
}
