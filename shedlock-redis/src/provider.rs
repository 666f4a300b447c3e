//! `RedisLockProvider`: leases as Redis keys set with `SET NX PX`; its
//! construction and configuration here, the acquisition protocol and the
//! operators' commands in the modules below.

mod acquisition;
mod admin;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Client};
use shedlock_core::identity::default_locked_by;
use shedlock_core::{
    BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch, Waiter,
};

use crate::connection::RedisConnection;
use crate::errors::{connect_error, invalid_url};
use crate::keys::LockKeys;
use crate::releases::ReleaseHub;
use crate::replica_acks::ReplicaAcks;

/// How long a command may wait for its reply before it fails (and, for an
/// acquisition, before the lease it may have taken is cleaned up).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Locks in Redis, one key per lock: `{prefix}:{environment}:{name}` (ShedLock's
/// format, so Java and Rust services can share locks).
///
/// - Acquisition is one round trip. An exclusive acquisition that does not
///   wait sends two plain commands, `SET key value NX PX lease GET` and
///   `EXISTS` of the lock's settings and shared holders (a second round trip,
///   a script, gives the lease back when the lock is paused or shared holders
///   are live, or renews it after a late answer); waiting, shared and counted
///   acquisitions, and every acquisition on a Cluster, run one script that
///   checks the capacity and the queue.
/// - The fencing token of a plain exclusive lease is issued on request, by a
///   script that checks the lease and lifts the counter to the server's
///   clock (see [`LockGuard::fencing_token`]).
/// - Release and extension run scripts that first compare the key's value
///   with this acquisition's unique value: a holder whose lease ended never
///   touches the next holder's lock.
/// - Leases are timed by Redis (key expiry); `lock_at_least_for` is measured by
///   this process's monotonic clock. No wall clocks are compared.
/// - Replication is asynchronous unless asked otherwise:
///   [`with_replica_acks`](Self::with_replica_acks) makes a lease count only
///   once replicas have it (`WAIT` in the same round trip), so a failover
///   does not lose it.
/// - One multiplexed connection is shared by clones of the provider, made
///   again when it is found closed; a command that met the closed
///   connection is sent again on the new one (every command is safe to send
///   twice).
///
/// Credentials in the URL are used to connect and never appear in errors,
/// logs or `Debug` output.
#[derive(Clone)]
pub struct RedisLockProvider {
    connection: RedisConnection,
    releases: Arc<ReleaseHub>,
    /// `host:port` (or socket path) of the server, for messages: no credentials.
    server: Arc<str>,
    key_prefix: Arc<str>,
    environment: Arc<str>,
    locked_by: Arc<str>,
    /// Whether runs are recorded in each lock's history.
    pub(crate) run_history: bool,
    /// Replicas that must acknowledge a lease's write before it counts.
    replica_acks: Option<ReplicaAcks>,
    /// Server, prefix and environment: see [`LockProvider::scope`].
    scope: Arc<str>,
    /// Whether the server takes `SET .. NX .. GET` (Redis 7 and later):
    /// cleared at the first syntax error, after which exclusive acquisitions
    /// run the acquisition script instead.
    set_nx_get: Arc<AtomicBool>,
}

impl RedisLockProvider {
    /// Connects to the Redis server at `url`: `redis://[user:password@]host:port[/db]`,
    /// `rediss://...` for TLS (feature `tls` or `tls-rustls`), or `redis+unix:///path`.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        let client = Client::open(url).map_err(invalid_url)?;
        Self::new(client).await
    }

    /// Connects with `client`, with shedlock's default timeouts
    /// ([`DEFAULT_RESPONSE_TIMEOUT`], [`DEFAULT_CONNECTION_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn new(client: Client) -> Result<Self, LockError> {
        Self::new_with_config(client, Self::default_connection_config()).await
    }

    /// Connects with `client` and your own connection settings (timeouts).
    /// Keep a response timeout: it bounds how long a lock call can hang when
    /// Redis stops answering.
    ///
    /// The provider keeps one multiplexed connection. When it is found
    /// closed or unusable, the next command connects again (and a command
    /// that met the closed connection is sent again on the new one): there
    /// are no reconnection settings to tune.
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn new_with_config(
        client: Client,
        config: AsyncConnectionConfig,
    ) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        let server = client.get_connection_info().addr().to_string();
        let releases = ReleaseHub::new(Some(client.clone()));
        let connection = RedisConnection::standalone(client, config)
            .await
            .map_err(|err| connect_error(&server, &err))?;
        Ok(Self::from_parts(connection, server, releases))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port`
    /// each), with shedlock's default timeouts. All keys of a lock share one
    /// hash slot, so every script runs on the node that owns the lock.
    ///
    /// Waiters on a cluster are woken at the holder's lease end and by polling
    /// with backoff; release notifications (pub/sub) are standalone and
    /// Sentinel only.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for malformed URLs,
    /// [`LockError::Store`] when the cluster cannot be reached.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        let client = ClusterClient::builder(nodes.iter().copied())
            .response_timeout(DEFAULT_RESPONSE_TIMEOUT)
            .connection_timeout(DEFAULT_CONNECTION_TIMEOUT)
            .build()
            .map_err(invalid_url)?;
        Self::new_cluster(client, &cluster_description(nodes)).await
    }

    /// Connects with a Redis Cluster client you built (timeouts, TLS, retries).
    /// `description` names the cluster in error messages; give no credentials.
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when the cluster cannot be reached.
    pub async fn new_cluster(client: ClusterClient, description: &str) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        let connection = RedisConnection::cluster(client)
            .await
            .map_err(|err| connect_error(description, &err))?;
        Ok(Self::from_parts(
            connection,
            description.to_owned(),
            ReleaseHub::new(None),
        ))
    }

    /// Connects to the master that the Sentinels at `sentinels`
    /// (`redis://host:port` each) name for `master_name`. After a connection
    /// failure the master is looked up again, so a failover is followed.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for malformed URLs,
    /// [`LockError::Store`] when no Sentinel or master can be reached.
    pub async fn connect_sentinel(
        sentinels: &[&str],
        master_name: &str,
    ) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        // A `String`: what `build` takes without `tls-rustls` (with it, any
        // `AsRef<str>`).
        #[allow(clippy::unnecessary_to_owned)]
        let sentinel = SentinelClient::build(
            sentinels.to_vec(),
            master_name.to_owned(),
            None,
            SentinelServerType::Master,
        )
        .map_err(invalid_url)?;
        Self::new_sentinel(sentinel, master_name).await
    }

    /// Connects with a Sentinel client you built (credentials, TLS, database).
    ///
    /// # Errors
    ///
    /// [`LockError::Store`] when no Sentinel or master can be reached.
    pub async fn new_sentinel(
        sentinel: SentinelClient,
        master_name: &str,
    ) -> Result<Self, LockError> {
        crate::connection::prepare_tls();
        let server = format!("the master '{master_name}' named by Sentinel");
        let config = Self::default_connection_config();
        let sentinel = Arc::new(tokio::sync::Mutex::new(sentinel));
        let connection = RedisConnection::sentinel(sentinel.clone(), config)
            .await
            .map_err(|err| connect_error(&server, &err))?;
        // Release notifications go to the master found now; after a failover,
        // waiters fall back to lease-end hints and polling.
        let releases = ReleaseHub::new(sentinel.lock().await.async_get_client().await.ok());
        Ok(Self::from_parts(connection, server, releases))
    }

    fn from_parts(connection: RedisConnection, server: String, releases: ReleaseHub) -> Self {
        RedisLockProvider {
            connection,
            releases: Arc::new(releases),
            server: server.into(),
            key_prefix: "job-lock".into(),
            environment: "default".into(),
            locked_by: default_locked_by().into(),
            run_history: false,
            replica_acks: None,
            scope: "".into(),
            set_nx_get: Arc::new(AtomicBool::new(true)),
        }
        .with_new_scope()
    }

    fn with_new_scope(mut self) -> Self {
        self.scope = format!(
            "redis:{}/{}:{}",
            self.server, self.key_prefix, self.environment
        )
        .into();
        self
    }

    /// Sets the first part of every lock key (default `"job-lock"`, as ShedLock).
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into().into();
        self.with_new_scope()
    }

    /// Sets the second part of every lock key (default `"default"`, as
    /// ShedLock), e.g. to keep staging and production locks apart on one server.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into().into();
        self.with_new_scope()
    }

    /// Sets who this process is in lock values (default: host name and process id).
    pub fn with_locked_by(mut self, locked_by: impl Into<String>) -> Self {
        self.locked_by = locked_by.into().into();
        self
    }

    /// Whether each run under a lock is recorded in the lock's history (its
    /// last 20 runs: times, outcome, holder, token; read with
    /// [`LockAdmin::run_history`](shedlock_core::LockAdmin::run_history) and
    /// `shedlock history`), written by the release script in the same round
    /// trip. Off by default: it costs about 5 % of a lock cycle (see
    /// BENCHMARKS.md), which takes the cycle past 1.10 times the raw client's.
    pub fn with_run_history(mut self, record: bool) -> Self {
        self.run_history = record;
        self
    }

    /// Counts a lease as taken, or extended, only once `replicas` replicas
    /// have acknowledged its write: `WAIT replicas timeout` goes after the
    /// acquisition or the extension, in the same round trip (Redisson does
    /// this by default). Off by default.
    ///
    /// Redis replicates asynchronously. Without this, a master that dies
    /// before a lease's write reached its replica, and the replica that
    /// Sentinel (or a Cluster) then promotes, lose the lease: another
    /// process takes the lock while its holder still runs (RELIABILITY.md,
    /// "Failover and replica acknowledgement", shows it). With it:
    ///
    /// - an acquisition that fewer replicas acknowledged within `timeout`
    ///   gives its lease back and fails with a [`LockError::Store`] that says
    ///   how many of how many acknowledged and that the lock was not taken:
    ///   no job runs on it;
    /// - an extension that fewer replicas acknowledged fails the same way,
    ///   and the guard treats its lease as uncertain, as after any store
    ///   error;
    /// - the lease is still counted from the instant its request was sent,
    ///   so the time `WAIT` takes comes out of it.
    ///
    /// Sentinel and Cluster promote the replica with the most data, so an
    /// acknowledged lease survives a failover of its master. It is not a
    /// consensus protocol (see Redis's documentation of `WAIT`): a failover
    /// to a replica that did not acknowledge (ask for as many replicas as
    /// may be promoted), or to one that restarted without its data, can still
    /// lose it. Releases and fencing tokens do not wait (a lost release only
    /// keeps the lock until its lease ends; tokens are lifted to the server's
    /// clock).
    ///
    /// What it costs: one more command per acquisition and extension, and
    /// the replicas' acknowledgement (a round trip from the master to its
    /// replicas; BENCHMARKS.md, "Replica acknowledgement"). `WAIT` holds the
    /// provider's connection on the server until it answers, so while a
    /// replica lags or is down every command of this provider, other locks'
    /// too, waits behind it, up to `timeout` each time. Keep `timeout` well
    /// below the response timeout ([`DEFAULT_RESPONSE_TIMEOUT`] unless you
    /// set one): a `WAIT` that outlasts it makes the acquisition uncertain. An
    /// acquisition refused because the lock is held waits too (for this
    /// connection's last write: at once while the replicas keep up).
    ///
    /// On a Redis Cluster, `WAIT` goes in one pipeline with the acquisition
    /// script to the master of the lock's slot and counts that master's
    /// replicas. A pipeline redirected while the slot moves is sent again
    /// whole to the new master (the `WAIT` at the old one only waited).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] when `replicas` is 0 or `timeout`
    /// is zero (`WAIT` would wait forever).
    pub fn with_replica_acks(
        mut self,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Self, LockError> {
        self.replica_acks = Some(ReplicaAcks::new(replicas, timeout)?);
        Ok(self)
    }

    /// The Redis key of the lock `name`.
    pub fn lock_key(&self, name: &str) -> String {
        self.keys(name).lock
    }

    /// The Redis key of the fencing-token counter of the lock `name` (in the
    /// lock key's Cluster slot).
    pub fn fence_key(&self, name: &str) -> String {
        self.keys(name).fence()
    }

    /// `locked_by` of this provider's acquisitions.
    pub fn locked_by(&self) -> &str {
        &self.locked_by
    }

    /// The connection settings [`new`](Self::new) and the other constructors
    /// use: [`DEFAULT_RESPONSE_TIMEOUT`] and [`DEFAULT_CONNECTION_TIMEOUT`].
    /// A starting point for [`new_with_config`](Self::new_with_config).
    pub fn default_connection_config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(DEFAULT_CONNECTION_TIMEOUT))
    }

    fn keys(&self, name: &str) -> LockKeys {
        LockKeys::new(&self.key_prefix, &self.environment, name)
    }
}

impl fmt::Debug for RedisLockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockProvider")
            .field("server", &self.server)
            .field("key_prefix", &self.key_prefix)
            .field("environment", &self.environment)
            .field("locked_by", &self.locked_by)
            .finish_non_exhaustive()
    }
}

impl LockProvider for RedisLockProvider {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(self.acquire(config, None))
    }

    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(self.acquire(config, Some(waiter)))
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        Box::pin(async move { self.releases.watch(&self.keys(name).lock).await })
    }

    fn scope(&self) -> &str {
        &self.scope
    }

    fn replica_identity(&self) -> &str {
        &self.locked_by
    }
}

/// `cluster of host:port, host:port`, without credentials.
fn cluster_description(nodes: &[&str]) -> String {
    let addresses: Vec<String> = nodes
        .iter()
        .map(|node| {
            redis::IntoConnectionInfo::into_connection_info(*node)
                .map(|info| info.addr().to_string())
                .unwrap_or_else(|_| "?".to_owned())
        })
        .collect();
    format!("cluster of {}", addresses.join(", "))
}
