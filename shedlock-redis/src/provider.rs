//! `RedisLockProvider`: leases as Redis keys set with `SET NX PX`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisError, Script, Value};
use shedlock_core::identity::default_locked_by;
use shedlock_core::{
    BoxFuture, Lease, LockConfiguration, LockError, LockGuard, LockProvider, ReleaseWatch, Waiter,
};

use crate::connection::RedisConnection;
use crate::errors::{connect_error, invalid_url, reply_may_be_lost, store_error, what_happened};
use crate::keys::LockKeys;
use crate::releases::{RELEASE_CHANNEL, ReleaseHub};
use crate::scripts::{
    ACQUIRE, CLAIM, EXTEND, EXTEND_SHARED, RELEASE, RELEASE_SHARED, evalsha, invoke,
};
use crate::value::{WAITED_MARK, new_lock_value};

/// How long a command may wait for its reply before it fails (and, for an
/// acquisition, before the lease it may have taken is cleaned up).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The least fencing counter whose `INCR` is taken as a token as it is
/// (10^15 microseconds: September 2001). Counters are seeded from the
/// server's clock in microseconds, so a smaller value is a counter that is
/// new, expired, or parked while the lock is paused (see `fence.lua`).
const FENCE_SEEDED: i64 = 1_000_000_000_000_000;

/// Locks in Redis, one key per lock: `{prefix}:{environment}:{name}` (ShedLock's
/// format, so Java and Rust services can share locks).
///
/// - Acquisition is one round trip. An exclusive acquisition that does not
///   wait sends two plain commands, `SET key value NX PX lease GET` and
///   `INCR` of the lock's fencing counter (a second round trip, a script,
///   seeds a new counter, finds a pause, or vouches for a late answer);
///   waiting, shared and counted acquisitions run one script that checks the
///   capacity and the queue.
/// - Release and extension run scripts that first compare the key's value
///   with this acquisition's unique value: a holder whose lease ended never
///   touches the next holder's lock.
/// - Leases are timed by Redis (key expiry); `lock_at_least_for` is measured by
///   this process's monotonic clock. No wall clocks are compared.
/// - The connection is a [`ConnectionManager`]: one multiplexed connection
///   shared by clones of the provider, reconnecting by itself.
///
/// Credentials in the URL are used to connect and never appear in errors,
/// logs or `Debug` output.
#[derive(Clone)]
pub struct RedisLockProvider {
    pub(crate) connection: RedisConnection,
    pub(crate) releases: Arc<ReleaseHub>,
    /// `host:port` (or socket path) of the server, for messages: no credentials.
    pub(crate) server: Arc<str>,
    pub(crate) key_prefix: Arc<str>,
    pub(crate) environment: Arc<str>,
    pub(crate) locked_by: Arc<str>,
    /// Server, prefix and environment: see [`LockProvider::scope`].
    pub(crate) scope: Arc<str>,
    /// Whether the server takes `SET .. NX .. GET` (Redis 7 and later):
    /// cleared at the first syntax error, after which exclusive acquisitions
    /// run the acquisition script instead.
    set_nx_get: Arc<AtomicBool>,
}

impl RedisLockProvider {
    /// Connects to the Redis server at `url`: `redis://[user:password@]host:port[/db]`,
    /// `rediss://...` for TLS (feature `tls`), or `redis+unix:///path`.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a malformed URL,
    /// [`LockError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
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
        Self::with_connection_config(client, default_connection_config()).await
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
    pub async fn with_connection_config(
        client: Client,
        config: AsyncConnectionConfig,
    ) -> Result<Self, LockError> {
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
        let server = format!("the master '{master_name}' named by Sentinel");
        let config = default_connection_config();
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

    /// Exclusive acquisitions run the acquisition script, as on a server
    /// without `SET NX GET`: for tests of that path on a current server.
    #[cfg(feature = "testkit")]
    pub fn with_scripted_acquisitions(mut self) -> Self {
        self.set_nx_get = Arc::new(AtomicBool::new(false));
        self
    }

    pub(crate) fn keys(&self, name: &str) -> LockKeys {
        LockKeys::new(&self.key_prefix, &self.environment, name)
    }

    /// One acquisition: exclusive or shared, with a waiter's place in the queue.
    async fn acquire(
        &self,
        config: &LockConfiguration,
        waiter: Option<&Waiter>,
    ) -> Result<Option<LockGuard>, LockError> {
        let keys = self.keys(config.name());
        // A capacity of 0 in the configuration is a pause only the script sees.
        if waiter.is_none()
            && config.mode().permits().is_none()
            && config.capacity() != Some(0)
            && self.set_nx_get.load(Ordering::Relaxed)
        {
            return self.acquire_exclusive(config, keys).await;
        }
        self.acquire_scripted(config, waiter, keys).await
    }

    fn new_lease(&self, keys: &LockKeys, shared: bool) -> RedisLease {
        RedisLease {
            connection: self.connection.clone(),
            server: self.server.clone(),
            holders_key: shared.then(|| keys.holders()),
            value: new_lock_value(&self.locked_by),
            lock_key: keys.lock.clone(),
        }
    }

    /// An exclusive acquisition that does not wait, in one round trip of two
    /// plain commands (no script: about a third of the server's work):
    ///
    /// - `SET lock value NX PX lease GET` takes the lock, or answers the
    ///   holder's value: this acquisition's own when a client resent it after
    ///   a lost reply, so it still owns the lock; ShedLock's marker while
    ///   shared holders have it.
    /// - `INCR fence` is the fencing token. Both commands ran between sending
    ///   and the answer, the INCR after the SET; when that span is shorter
    ///   than the lease, the INCR ran while the lease was alive, so every
    ///   earlier holder's token is below it and every later holder's above.
    ///   A pause parks the counter below [`FENCE_SEEDED`], so a paused lock is
    ///   never run: such an answer, a new counter and a late answer settle
    ///   through `claim.lua`, one more round trip.
    async fn acquire_exclusive(
        &self,
        config: &LockConfiguration,
        keys: LockKeys,
    ) -> Result<Option<LockGuard>, LockError> {
        let lease = self.new_lease(&keys, false);
        let fence = keys.fence();
        let mut set = Cmd::with_capacity(7, lease.lock_key.len() + lease.value.len() + 32);
        set.arg("SET")
            .arg(&lease.lock_key)
            .arg(&lease.value)
            .arg("NX")
            .arg("PX")
            .arg(millis(config.lock_at_most_for()))
            .arg("GET");
        let mut incr = Cmd::with_capacity(2, fence.len() + 4);
        incr.arg("INCR").arg(&fence);
        let mut pipe = redis::Pipeline::with_capacity(2);
        pipe.add_command(set).add_command(incr);
        let mut connection = self.connection.clone();
        let mut unanswered = Unanswered(Some(lease));
        let requested_at = Instant::now();
        let reply = connection.req_packed_commands(&pipe, 0, 2).await;
        let answered_in = requested_at.elapsed();
        let Some(lease) = unanswered.0.take() else {
            return Ok(None); // unreachable: only this function takes it
        };
        let values = match reply {
            Ok(values) => values,
            Err(err) => {
                return Err(self
                    .failed_acquisition(config, lease, requested_at, err)
                    .await);
            }
        };
        match ExclusiveReply::read(&values, &lease.value) {
            ExclusiveReply::Taken(Some(token))
                if token >= FENCE_SEEDED && vouched(answered_in, config.lock_at_most_for()) =>
            {
                Ok(Some(LockGuard::new(
                    config,
                    token.unsigned_abs(),
                    requested_at,
                    lease,
                )))
            }
            ExclusiveReply::Taken(_) => self.claim(config, &keys, lease, requested_at).await,
            ExclusiveReply::Held => Ok(None),
            ExclusiveReply::NoSetNxGet => {
                self.set_nx_get.store(false, Ordering::Relaxed);
                tracing::info!(
                    server = %self.server,
                    "Redis does not take SET NX GET (before 7.0); exclusive locks are taken by script"
                );
                self.acquire_scripted(config, None, keys).await
            }
            ExclusiveReply::Failed(err) => Err(self.not_taken(config, &err)),
        }
    }

    /// The fencing token of a one-round-trip acquisition whose `INCR` cannot
    /// serve: checked against the lease and the pause in one script.
    async fn claim(
        &self,
        config: &LockConfiguration,
        keys: &LockKeys,
        lease: RedisLease,
        requested_at: Instant,
    ) -> Result<Option<LockGuard>, LockError> {
        let mut claim = CLAIM.key(&lease.lock_key);
        claim
            .key(keys.fence())
            .key(keys.settings())
            .arg(&lease.value)
            .arg(config.capacity().map_or(-1, i64::from));
        // The lease is held: if this future is dropped before the answer, or
        // the script fails, it is released in the background.
        let mut held = Unanswered(Some(lease));
        let reply = claim
            .invoke_async::<i64>(&mut self.connection.clone())
            .await;
        match reply {
            Ok(token) if token > 0 => {
                let Some(lease) = held.0.take() else {
                    return Ok(None); // unreachable: only this function takes it
                };
                Ok(Some(LockGuard::new(
                    config,
                    token.unsigned_abs(),
                    requested_at,
                    lease,
                )))
            }
            Ok(answer) => {
                // Paused (the script removed the lease) or the lease had ended.
                held.0 = None;
                if answer == 0 {
                    tracing::debug!(lock = %config.name(), "lock paused (capacity 0)");
                } else {
                    tracing::warn!(
                        lock = %config.name(),
                        "lock lease ended before its fencing token was handed out; not acquired"
                    );
                }
                Ok(None)
            }
            Err(err) if reply_may_be_lost(&err) => {
                let Some(lease) = held.0.take() else {
                    return Ok(None); // unreachable: only this function takes it
                };
                Err(self
                    .release_uncertain_acquisition(config, lease, requested_at, err)
                    .await)
            }
            // `held` releases the lease in the background as it goes.
            Err(err) => Err(store_error(
                &self.server,
                &format!("handing out the fencing token of lock '{}'", config.name()),
                &err,
                "the lease taken is released",
            )),
        }
    }

    /// The acquisition script: waiting, shared and counted acquisitions, and
    /// exclusive ones on servers without `SET NX GET`.
    async fn acquire_scripted(
        &self,
        config: &LockConfiguration,
        waiter: Option<&Waiter>,
        keys: LockKeys,
    ) -> Result<Option<LockGuard>, LockError> {
        let permits = config.mode().permits();
        let lease = self.new_lease(&keys, permits.is_some());
        let mut connection = self.connection.clone();
        let mut acquire = ACQUIRE.key(&lease.lock_key);
        acquire
            .key(keys.fence())
            .key(keys.holders())
            .key(keys.waiters())
            .key(keys.settings())
            .arg(&lease.value)
            .arg(millis(config.lock_at_most_for()))
            .arg(permits.unwrap_or(0))
            .arg(config.capacity().map_or(-1, i64::from))
            .arg(waiter.map_or("", Waiter::id))
            .arg(waiter.map_or(0, |waiter| millis(waiter.hold_place_for())));
        // If this future is dropped while the command is out, the lease it
        // may take is released in the background, not left until it ends.
        let mut unanswered = Unanswered(Some(lease));
        let requested_at = Instant::now();
        let reply = acquire.invoke_async::<i64>(&mut connection).await;
        let Some(lease) = unanswered.0.take() else {
            return Ok(None); // unreachable: only this function takes it
        };
        match reply {
            Ok(token) if token > 0 => Ok(Some(LockGuard::new(
                config,
                token.unsigned_abs(),
                requested_at,
                lease,
            ))),
            Ok(held) => {
                if held == 0 {
                    tracing::debug!(lock = %config.name(), "lock paused (capacity 0)");
                }
                // -2 - ms left of the soonest lease; -1 or 0: no end known.
                let lease_ends_at = (-2i64)
                    .checked_sub(held)
                    .and_then(|left| u64::try_from(left).ok())
                    .map(|left| Instant::now() + Duration::from_millis(left));
                self.releases.note_lease_end(&lease.lock_key, lease_ends_at);
                Ok(None)
            }
            Err(err) => Err(self
                .failed_acquisition(config, lease, requested_at, err)
                .await),
        }
    }

    /// An acquisition without an answer: released when its reply may have
    /// been lost, else a plain store error (nothing was taken).
    async fn failed_acquisition(
        &self,
        config: &LockConfiguration,
        lease: RedisLease,
        requested_at: Instant,
        err: RedisError,
    ) -> LockError {
        if reply_may_be_lost(&err) {
            return self
                .release_uncertain_acquisition(config, lease, requested_at, err)
                .await;
        }
        self.not_taken(config, &err)
    }

    /// The error of an acquisition the server answered with a failure.
    fn not_taken(&self, config: &LockConfiguration, err: &RedisError) -> LockError {
        store_error(
            &self.server,
            &format!("acquiring lock '{}'", config.name()),
            err,
            "the lock was not taken",
        )
    }

    /// After an acquisition whose reply was lost: release whatever it may have
    /// taken (the value is unique, so only that acquisition's lease can match),
    /// then report the failure.
    async fn release_uncertain_acquisition(
        &self,
        config: &LockConfiguration,
        lease: RedisLease,
        requested_at: Instant,
        err: RedisError,
    ) -> LockError {
        let name = config.name().to_owned();
        let reason = what_happened(&self.server, &err);
        let released = lease.release(Duration::ZERO).await.is_ok();
        if released {
            tracing::warn!(lock = %name, %reason, "lock acquisition uncertain; any lease it took was released");
        } else {
            tracing::error!(
                lock = %name, %reason,
                "lock acquisition uncertain; retrying the release in the background"
            );
            let deadline = requested_at + config.lock_at_most_for();
            let name = name.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if lease.release(Duration::ZERO).await.is_ok() {
                        tracing::info!(lock = %name, "uncertain lock acquisition released");
                        return;
                    }
                }
                tracing::warn!(lock = %name, "gave up releasing an uncertain acquisition: its lease has ended anyway");
            });
        }
        LockError::AcquisitionUncertain {
            name,
            reason,
            released,
        }
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
}

/// What the one-round-trip exclusive acquisition answered.
#[derive(Debug)]
enum ExclusiveReply {
    /// The lock is this acquisition's, with the counter's `INCR` if it answered a number.
    Taken(Option<i64>),
    /// Another holder has it.
    Held,
    /// The server is older than Redis 7 (no `SET .. NX .. GET`); nothing was set.
    NoSetNxGet,
    /// The `SET` failed; nothing was set.
    Failed(RedisError),
}

impl ExclusiveReply {
    /// Reads the answers of `SET .. NX PX .. GET` and `INCR` for the lock value `ours`.
    fn read(values: &[Value], ours: &str) -> ExclusiveReply {
        let token = match values.get(1) {
            Some(Value::Int(token)) => Some(*token),
            _ => None,
        };
        match values.first() {
            Some(Value::Nil) => ExclusiveReply::Taken(token),
            // The holder's value: our own when a client resent this
            // acquisition (perhaps marked by a waiter since: acquire.lua).
            Some(Value::BulkString(held))
                if held
                    .strip_prefix(ours.as_bytes())
                    .is_some_and(|rest| rest.is_empty() || rest == WAITED_MARK.as_bytes()) =>
            {
                ExclusiveReply::Taken(token)
            }
            Some(Value::BulkString(_) | Value::SimpleString(_)) => ExclusiveReply::Held,
            Some(Value::ServerError(err))
                if err.code() == "ERR"
                    && err
                        .details()
                        .is_some_and(|details| details.contains("syntax")) =>
            {
                ExclusiveReply::NoSetNxGet
            }
            Some(Value::ServerError(err)) => ExclusiveReply::Failed(err.clone().into()),
            other => ExclusiveReply::Failed(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected answer to SET NX PX GET",
                format!("{other:?}"),
            ))),
        }
    }
}

/// Whether an answer came soon enough to vouch for its `INCR` as a fencing
/// token: the lease (timed by Redis) was alive when the INCR ran if the span
/// from sending to the answer, which holds both commands, is shorter than the
/// lease (with 0.2 % for the two clocks' rates).
fn vouched(answered_in: Duration, lease: Duration) -> bool {
    answered_in.saturating_add(answered_in / 500) < lease
}

/// An acquisition sent but not yet answered; see `try_lock`.
struct Unanswered(Option<RedisLease>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(lease) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(err) = lease.release(Duration::ZERO).await {
                    tracing::warn!(
                        key = %lease.lock_key, error = %err,
                        "a cancelled lock acquisition could not be released; it ends at lock_at_most_for"
                    );
                }
            });
        }
    }
}

/// One acquisition's lease: its key and unique value.
struct RedisLease {
    connection: RedisConnection,
    server: Arc<str>,
    lock_key: String,
    /// The shared holders' key, for a shared lease; `None`: exclusive.
    holders_key: Option<String>,
    value: String,
}

impl RedisLease {
    /// An `EVALSHA` of the exclusive or the shared variant of an operation on
    /// this lease, with its keys and value; the caller adds the rest.
    fn script_call(
        &self,
        exclusive: &'static Script,
        shared: &'static Script,
        args: usize,
    ) -> (&'static Script, Cmd) {
        let data = self.lock_key.len() + self.value.len() + 64;
        match &self.holders_key {
            // The lock key's shared marker follows the holders.
            Some(holders) => {
                let mut cmd = evalsha(shared, 2, args + 1, data + holders.len());
                cmd.arg(holders).arg(&self.lock_key).arg(&self.value);
                (shared, cmd)
            }
            None => {
                let mut cmd = evalsha(exclusive, 1, args + 1, data);
                cmd.arg(&self.lock_key).arg(&self.value);
                (exclusive, cmd)
            }
        }
    }
}

impl Lease for RedisLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let (script, mut extend) = self.script_call(&EXTEND, &EXTEND_SHARED, 1);
            extend.arg(millis(lock_at_most_for));
            invoke::<i64>(script, &extend, &mut self.connection.clone())
                .await
                .map(|extended| extended == 1)
                .map_err(|err| {
                    store_error(
                        &self.server,
                        &format!("extending lock key '{}'", self.lock_key),
                        &err,
                        "the lease still ends at its previous end",
                    )
                })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let keep_ms = if keep_for.is_zero() {
                0
            } else {
                millis(keep_for)
            };
            let (script, mut release) = self.script_call(&RELEASE, &RELEASE_SHARED, 2);
            release.arg(keep_ms).arg(RELEASE_CHANNEL);
            invoke::<i64>(script, &release, &mut self.connection.clone())
                .await
                .map(|released| released == 1)
                .map_err(|err| {
                    store_error(
                        &self.server,
                        &format!("releasing lock key '{}'", self.lock_key),
                        &err,
                        "the lease ends at lock_at_most_for at the latest",
                    )
                })
        })
    }
}

/// shedlock's timeouts: [`DEFAULT_RESPONSE_TIMEOUT`], [`DEFAULT_CONNECTION_TIMEOUT`].
fn default_connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(DEFAULT_CONNECTION_TIMEOUT))
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

/// A duration in whole milliseconds, rounded up (a lease is never shorter than asked), at least 1.
fn millis(duration: Duration) -> u64 {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(resp: &[u8]) -> Value {
        redis::parse_redis_value(resp).unwrap_or_else(|err| Value::SimpleString(err.to_string()))
    }

    #[test]
    fn a_set_nx_get_answer_tells_taken_resent_held_and_old_servers_apart() {
        let ours = "ADDED:2026-01-01T00:00:00.000Z@host:1;id=a";
        let token = reply(b":1765000000000001\r\n");
        let read = |set: &[u8]| ExclusiveReply::read(&[reply(set), token.clone()], ours);
        assert!(matches!(
            read(b"$-1\r\n"),
            ExclusiveReply::Taken(Some(1_765_000_000_000_001))
        ));
        let resent = format!("${}\r\n{ours}\r\n", ours.len());
        assert!(matches!(
            read(resent.as_bytes()),
            ExclusiveReply::Taken(Some(_))
        ));
        let marked = format!("{ours}{WAITED_MARK}");
        let resent_marked = format!("${}\r\n{marked}\r\n", marked.len());
        assert!(matches!(
            read(resent_marked.as_bytes()),
            ExclusiveReply::Taken(Some(_))
        ));
        let longer = format!("{ours}1");
        let another = format!("${}\r\n{longer}\r\n", longer.len());
        assert!(matches!(read(another.as_bytes()), ExclusiveReply::Held));
        assert!(matches!(
            read(b"$15\r\nshedlock:shared\r\n"),
            ExclusiveReply::Held
        ));
        assert!(matches!(
            read(b"-ERR syntax error\r\n"),
            ExclusiveReply::NoSetNxGet
        ));
        assert!(matches!(
            read(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
            ExclusiveReply::Failed(_)
        ));
        // Taken, but the counter is not a number: the token comes from claim.lua.
        let not_a_number = reply(b"-ERR value is not an integer or out of range\r\n");
        assert!(matches!(
            ExclusiveReply::read(&[reply(b"$-1\r\n"), not_a_number], ours),
            ExclusiveReply::Taken(None)
        ));
    }

    #[test]
    fn only_an_answer_well_inside_the_lease_vouches_for_its_token() {
        let lease = Duration::from_secs(10);
        assert!(vouched(Duration::from_millis(1), lease));
        assert!(vouched(Duration::from_millis(9_979), lease));
        assert!(!vouched(Duration::from_millis(9_990), lease));
        assert!(!vouched(lease, lease));
    }

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::ZERO), 1);
    }
}
