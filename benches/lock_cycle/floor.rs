//! The floor: the raw `redis` crate sending the least a safe lease costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::MultiplexedConnection;
use redis::{Script, ToRedisArgs, Value};
use shedlock::redis::bench_support;

use crate::{BenchResult, LEASE};

/// Compare-and-delete: the least a safe release can send.
pub(crate) const FLOOR_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// The raw client: exactly two commands per cycle, nothing else (and, for
/// the breakdown, shedlock's own commands sent the same way).
#[derive(Clone)]
pub(crate) struct Floor {
    pub(crate) connection: MultiplexedConnection,
    pub(crate) release: Arc<Script>,
    /// An acquisition as one short script (`SET NX PX GET` and `EXISTS` of
    /// the settings and holders keys inside): a shape measured against the
    /// two pipelined commands.
    pub(crate) scripted_acquire: Arc<Script>,
    /// `locked_by` in the bound's lock values: the provider's.
    pub(crate) locked_by: Arc<str>,
}

/// Unique values for the floor's acquisitions (a counter: the cheapest unique value).
pub(crate) static FLOOR_VALUE: AtomicU64 = AtomicU64::new(0);

impl Floor {
    /// `SET NX PX`; the value to release with when acquired.
    pub(crate) async fn acquire(&self, key: &str) -> BenchResult<Option<u64>> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        let reply: Value = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok((reply != Value::Nil).then_some(value))
    }

    pub(crate) async fn release(&self, key: &str, value: u64) -> BenchResult<()> {
        let released: i64 = self
            .release
            .key(key)
            .arg(value)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if released != 1 {
            return Err(format!("floor release of {key} found another value").into());
        }
        Ok(())
    }

    /// `SET key value NX PX` (with `GET` when `get`) and `EXISTS` of a
    /// settings and a holders hash in one round trip, as shedlock's plain
    /// acquisition sends them; fails unless the lock was taken.
    pub(crate) async fn acquire_checked(
        &self,
        key: &str,
        value: impl ToRedisArgs,
        get: bool,
    ) -> BenchResult<()> {
        let mut set = redis::cmd("SET");
        set.arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64);
        if get {
            set.arg("GET");
        }
        let (previous, either): (Value, i64) = redis::pipe()
            .add_command(set)
            .cmd("EXISTS")
            .arg(format!("{{{key}}}:settings"))
            .arg(format!("{{{key}}}:holders"))
            .query_async(&mut self.connection.clone())
            .await?;
        // Taken: `OK`, or with `GET` no previous value.
        let taken = if get {
            previous == Value::Nil
        } else {
            previous != Value::Nil
        };
        if !taken || either != 0 {
            return Err(format!("checked acquisition of {key} failed").into());
        }
        Ok(())
    }

    /// The acquisition as one short script (the same commands inside), then
    /// the floor's release.
    pub(crate) async fn one_script_cycle(&self, key: &str) -> BenchResult<()> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        let (held, either): (String, i64) = self
            .scripted_acquire
            .key(key)
            .key(format!("{{{key}}}:settings"))
            .key(format!("{{{key}}}:holders"))
            .arg(value)
            .arg(LEASE.as_millis() as u64)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if !held.is_empty() || either != 0 {
            return Err(format!("one-script acquisition of {key} failed").into());
        }
        self.release(key, value).await
    }

    /// The floor with the read that keeps paused locks and shared holders
    /// safe, in the acquisition's round trip, then the floor's release: what
    /// that read costs by itself.
    pub(crate) async fn checked_cycle(&self, key: &str) -> BenchResult<()> {
        let value = FLOOR_VALUE.fetch_add(1, Ordering::Relaxed);
        self.acquire_checked(key, value, false).await?;
        self.release(key, value).await
    }

    /// The bound: the raw client sending exactly what shedlock sends for a
    /// plain cycle of the lock key `lock` (the provider's `lock_key`): the
    /// pipeline of `SET lock value NX PX .. GET` and `EXISTS settings
    /// holders` with shedlock's lock value, then shedlock's release script
    /// with its arguments. The provider cannot cost the server less than this.
    pub(crate) async fn bound_cycle(&self, lock: &str) -> BenchResult<()> {
        let value = bench_support::lock_value(&self.locked_by);
        self.acquire_checked(lock, &value, true).await?;
        let released: i64 = bench_support::release_script()
            .key(lock)
            .arg(&value)
            .arg(0)
            .arg(bench_support::RELEASE_CHANNEL)
            .invoke_async(&mut self.connection.clone())
            .await?;
        if released != 1 {
            return Err(format!("bound release of {lock} found another value").into());
        }
        Ok(())
    }

    pub(crate) async fn cycle(&self, key: &str) -> BenchResult<()> {
        let value = self
            .acquire(key)
            .await?
            .ok_or_else(|| format!("floor key {key} unexpectedly held"))?;
        self.release(key, value).await
    }
}
