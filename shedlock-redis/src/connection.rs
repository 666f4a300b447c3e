//! One connection type for every deployment: a standalone server (through a
//! self-reconnecting `ConnectionManager`), a Redis Cluster, or the master
//! that Sentinel names. Scripts and leases run on it unchanged.

use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A cheaply cloned, multiplexed connection to Redis.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConnection>),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Standalone(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
            RedisConnection::Sentinel(connection) => Box::pin(async move {
                connection
                    .send(|mut c| async move { c.req_packed_command(cmd).await })
                    .await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Standalone(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Sentinel(connection) => Box::pin(async move {
                connection
                    .send(
                        |mut c| async move { c.req_packed_commands(pipeline, offset, count).await },
                    )
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Standalone(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
            RedisConnection::Sentinel(_) => 0,
        }
    }
}

/// The current master's connection, looked up through Sentinel again after a
/// connection failure, so a failover is followed on the next call.
pub(crate) struct SentinelConnection {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The master's connection and its generation, so a failed call forgets
    /// only the connection it used, not a newer one another call just made.
    master: Mutex<(u64, Option<MultiplexedConnection>)>,
    config: AsyncConnectionConfig,
}

impl SentinelConnection {
    pub(crate) async fn connect(
        sentinel: SentinelClient,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let connection = SentinelConnection {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master: Mutex::new((0, None)),
            config,
        };
        connection.master().await?;
        Ok(connection)
    }

    /// The master's `Client`, as Sentinel names it now.
    pub(crate) async fn master_client(&self) -> RedisResult<redis::Client> {
        self.sentinel.lock().await.async_get_client().await
    }

    async fn master(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let mut sentinel = self.sentinel.lock().await;
        if let Some(master) = self.current() {
            return Ok(master); // another call connected while this one waited
        }
        let connection = sentinel
            .async_get_client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let mut master = self.lock_master();
        master.0 += 1;
        master.1 = Some(connection.clone());
        Ok((master.0, connection))
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let master = self.lock_master();
        master.1.clone().map(|connection| (master.0, connection))
    }

    fn lock_master(&self) -> std::sync::MutexGuard<'_, (u64, Option<MultiplexedConnection>)> {
        self.master
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn send<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let (generation, connection) = self.master().await?;
        let result = request(connection).await;
        if let Err(err) = &result
            && needs_new_master(err)
        {
            let mut master = self.lock_master();
            if master.0 == generation {
                master.1 = None;
            }
        }
        result
    }
}

/// Whether the connection is unusable or points at a server that is no
/// longer the master (a failover made it a read-only replica).
fn needs_new_master(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
        || err.is_timeout()
        || err.code() == Some("READONLY")
}
