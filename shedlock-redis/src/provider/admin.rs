//! `LockAdmin` for Redis: state, capacity, pause, resume, force-release, each
//! one script on the lock's keys; listing by `SCAN` (see the connection).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, RedisError, Script, ScriptInvocation};
use shedlock_core::{
    BoxFuture, LockAdmin, LockError, LockHolder, LockMode, LockState, MAX_PERMITS, RUN_HISTORY_LEN,
    RunRecord,
};

use super::RedisLockProvider;
use crate::connection::RedisConnection;
use crate::errors::store_error;
use crate::keys::{
    FENCE_SUFFIX, RENEWED_SUFFIX, RUNS_SUFFIX, TICK_SUFFIX, glob_escape, name_of_key,
};
use crate::releases::RELEASE_CHANNEL;
use crate::scripts::{FORCE_RELEASE, PAUSE, RESUME, SET_CAPACITY, STATE};
use crate::value::{RenewalStamp, holder_from_value, parse_run};

/// What `state.lua` returns: server ms, exclusive value, its PTTL, stored
/// capacity, live exclusive waiters, shared holders (value, "end permits token"
/// pairs), the exclusive holder's renewal stamp.
type StateReply = (
    i64,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Vec<String>,
    Option<String>,
);

/// The lock key's value while shared holders have the lock (see `acquire.lua`).
const SHARED_MARKER: &str = "shedlock:shared";

/// Locks whose states `list` reads in one round trip.
const STATES_PER_ROUND_TRIP: usize = 500;

impl RedisLockProvider {
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: ScriptInvocation<'_>,
        action: String,
    ) -> Result<T, LockError> {
        invocation
            .invoke_async::<T>(&mut self.connection.clone())
            .await
            .map_err(|err| store_error(&self.server, &action, &err, "nothing was changed"))
    }

    fn state_of(&self, name: &str, reply: StateReply) -> LockState {
        let (now, exclusive, exclusive_left, capacity, waiters, shared, renewed) = reply;
        let mut holders = Vec::new();
        if let Some(value) = exclusive.filter(|value| value != SHARED_MARKER) {
            let mut holder = holder_from_value(&value);
            holder.lease_left = u64::try_from(exclusive_left)
                .ok()
                .map(Duration::from_millis);
            if let Some(stamp) = renewed
                .as_deref()
                .and_then(|stamp| RenewalStamp::parse(stamp, &value))
            {
                holder.fencing_token = stamp.token;
                holder.renewed_ago = Some(Duration::from_millis(
                    u64::try_from(now - stamp.at_ms).unwrap_or(0),
                ));
                holder.renewals = Some(stamp.renewals);
            }
            holders.push(holder);
        }
        let mut shared_holders: Vec<LockHolder> = shared
            .chunks_exact(2)
            .filter_map(|pair| {
                let mut fields = pair[1].split(' ').map(str::parse::<i64>);
                let (Some(Ok(end)), Some(Ok(permits)), Some(Ok(token))) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return None;
                };
                let left = u64::try_from(end - now).ok().filter(|left| *left > 0)?;
                let mut holder = holder_from_value(&pair[0]);
                holder.lease_left = Some(Duration::from_millis(left));
                holder.mode = LockMode::Shared {
                    permits: u32::try_from(permits).unwrap_or(MAX_PERMITS),
                };
                holder.fencing_token = u64::try_from(token).ok();
                Some(holder)
            })
            .collect();
        shared_holders.sort_by_key(|holder| holder.fencing_token);
        holders.extend(shared_holders);
        let capacity = capacity.and_then(|capacity| capacity.parse::<u32>().ok());
        LockState {
            name: name.to_owned(),
            holders,
            capacity,
            paused: capacity == Some(0),
            exclusive_waiters: u32::try_from(waiters).unwrap_or(0),
        }
    }

    /// Names of locks with any key under this provider's prefix and environment.
    /// Every lock name with a key under the prefix and environment, and
    /// those of them with a run history.
    async fn scan_names(&self) -> Result<(BTreeSet<String>, BTreeSet<String>), LockError> {
        let base = format!("{}:{}:", self.key_prefix, self.environment);
        let escaped = glob_escape(&base);
        let mut names = BTreeSet::new();
        let mut with_runs = BTreeSet::new();
        // Lock keys; auxiliary keys in `{base name}:suffix` form; and those of
        // names with braces, `{tag}:base name:suffix`.
        for pattern in [
            format!("{escaped}*"),
            format!("{{{escaped}*"),
            format!("{{*}}:{escaped}*"),
        ] {
            for key in self.scan(&pattern).await? {
                // A fencing counter (kept a week past the last lease), a
                // renewal stamp or a tick record alone says nothing `list`
                // shows: a name only they name is a free lock, and not read.
                let auxiliary = key.starts_with('{');
                if auxiliary
                    && [FENCE_SUFFIX, RENEWED_SUFFIX, TICK_SUFFIX]
                        .iter()
                        .any(|suffix| key.ends_with(suffix))
                {
                    continue;
                }
                if let Some(name) = name_of_key(&key, &base) {
                    if auxiliary && key.ends_with(RUNS_SUFFIX) {
                        with_runs.insert(name.clone());
                    }
                    names.insert(name);
                }
            }
        }
        Ok((names, with_runs))
    }

    /// The answer of `command`, a read; `action` says what it was for in
    /// an error.
    async fn read<T: redis::FromRedisValue>(
        &self,
        command: &Cmd,
        action: impl FnOnce() -> String,
    ) -> Result<T, LockError> {
        command
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|err| store_error(&self.server, &action(), &err, "nothing was read"))
    }

    async fn read_runs(&self, name: &str) -> Result<Vec<RunRecord>, LockError> {
        let runs_key = self.keys(name).runs();
        let mut command = Cmd::new();
        command
            .arg("LRANGE")
            .arg(&runs_key)
            .arg(0)
            .arg(RUN_HISTORY_LEN - 1);
        let entries: Vec<String> = self
            .read(&command, || {
                format!("reading the run history of lock '{name}'")
            })
            .await?;
        Ok(entries
            .iter()
            .filter_map(|entry| parse_run(entry))
            .collect())
    }

    /// The newest run of each of `names`: one pipeline of `LINDEX` per
    /// [`STATES_PER_ROUND_TRIP`] names on a standalone server or Sentinel's
    /// master; one read each on a Cluster, whose nodes each hold part of them.
    async fn read_last_runs(&self, names: &[String]) -> Result<Vec<Option<RunRecord>>, LockError> {
        if self.connection.is_cluster() {
            let mut runs = Vec::with_capacity(names.len());
            for name in names {
                runs.push(self.read_runs(name).await?.into_iter().next());
            }
            return Ok(runs);
        }
        let mut runs = Vec::with_capacity(names.len());
        for page in names.chunks(STATES_PER_ROUND_TRIP) {
            let mut pipeline = redis::Pipeline::with_capacity(page.len());
            for name in page {
                pipeline.cmd("LINDEX").arg(self.keys(name).runs()).arg(0);
            }
            let entries: Vec<Option<String>> = pipeline
                .query_async(&mut self.connection.clone())
                .await
                .map_err(|err| {
                    store_error(
                        &self.server,
                        &format!("reading the last runs of {} locks", page.len()),
                        &err,
                        "nothing was read",
                    )
                })?;
            runs.extend(
                entries
                    .iter()
                    .map(|entry| entry.as_deref().and_then(parse_run)),
            );
        }
        Ok(runs)
    }

    /// Every key matching `pattern`: on each master of a cluster, else on the server.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, LockError> {
        let listing = |err: RedisError| {
            store_error(
                &self.server,
                "listing lock keys",
                &err,
                "nothing was listed",
            )
        };
        let RedisConnection::Cluster(_) = &self.connection else {
            return self
                .connection
                .scan_node(pattern, None)
                .await
                .map_err(listing);
        };
        let masters = self
            .connection
            .cluster_masters()
            .await
            .map_err(|err: RedisError| {
                store_error(
                    &self.server,
                    "listing cluster nodes",
                    &err,
                    "nothing was listed",
                )
            })?;
        let mut keys = Vec::new();
        for (host, port) in masters {
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            keys.extend(
                self.connection
                    .scan_node(pattern, Some(node))
                    .await
                    .map_err(listing)?,
            );
        }
        Ok(keys)
    }

    async fn read_state(&self, name: &str) -> Result<LockState, LockError> {
        let mut state = STATE.prepare_invoke();
        self.state_keys(&mut state, name);
        let reply = self
            .run::<StateReply>(state, format!("reading lock '{name}'"))
            .await?;
        Ok(self.state_of(name, reply))
    }

    /// The keys `state.lua` reads for `name`.
    fn state_keys(&self, invocation: &mut ScriptInvocation<'_>, name: &str) {
        let keys = self.keys(name);
        invocation
            .key(&keys.lock)
            .key(keys.holders())
            .key(keys.waiters())
            .key(keys.settings())
            .key(keys.renewed());
    }

    /// The states of `names`, in one round trip (a pipeline of `state.lua`
    /// calls) on a standalone server or Sentinel's master; one call each on
    /// a Cluster, whose nodes each hold part of the names.
    async fn read_states(&self, names: &[String]) -> Result<Vec<LockState>, LockError> {
        if self.connection.is_cluster() {
            let mut states = Vec::with_capacity(names.len());
            for name in names {
                states.push(self.read_state(name).await?);
            }
            return Ok(states);
        }
        let action = || format!("reading {} locks' states", names.len());
        let failed =
            |err: &RedisError| store_error(&self.server, &action(), err, "nothing was read");
        let mut pipeline = redis::Pipeline::with_capacity(names.len());
        for name in names {
            let keys = self.keys(name);
            let mut call = crate::scripts::evalsha(&STATE, 5, 0, keys.lock.len() * 6);
            call.arg(&keys.lock)
                .arg(keys.holders())
                .arg(keys.waiters())
                .arg(keys.settings())
                .arg(keys.renewed());
            pipeline.add_command(call);
        }
        let mut connection = self.connection.clone();
        let mut replies = redis::aio::ConnectionLike::req_packed_commands(
            &mut connection,
            &pipeline,
            0,
            names.len(),
        )
        .await
        .map_err(|err| failed(&err))?;
        let no_script = |value: &redis::Value| {
            matches!(value, redis::Value::ServerError(err)
                if err.kind() == Some(redis::ServerErrorKind::NoScript))
        };
        if replies.iter().any(no_script) {
            STATE
                .load_async(&mut connection)
                .await
                .map_err(|err| failed(&err))?;
            replies = redis::aio::ConnectionLike::req_packed_commands(
                &mut connection,
                &pipeline,
                0,
                names.len(),
            )
            .await
            .map_err(|err| failed(&err))?;
        }
        names
            .iter()
            .zip(replies)
            .map(|(name, reply)| {
                let reply = reply
                    .extract_error()
                    .and_then(|value| Ok(redis::from_redis_value::<StateReply>(value)?))
                    .map_err(|err| failed(&err))?;
                Ok(self.state_of(name, reply))
            })
            .collect()
    }

    async fn settings_change(
        &self,
        script: &Script,
        name: &str,
        action: &str,
        args: &[&str],
    ) -> Result<i64, LockError> {
        let keys = self.keys(name);
        let mut invocation = script.key(keys.settings());
        invocation.key(keys.fence());
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.arg(RELEASE_CHANNEL).arg(&keys.lock);
        self.run::<i64>(invocation, format!("{action} lock '{name}'"))
            .await
    }
}

impl LockAdmin for RedisLockProvider {
    fn lock_state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<LockState, LockError>> {
        Box::pin(self.read_state(name))
    }

    fn list_locks(&self) -> BoxFuture<'_, Result<Vec<LockState>, LockError>> {
        Box::pin(async move {
            let mut locks = Vec::new();
            let (names, with_runs) = self.scan_names().await?;
            let names: Vec<String> = names.into_iter().collect();
            for page in names.chunks(STATES_PER_ROUND_TRIP) {
                for state in self.read_states(page).await? {
                    if state.is_locked()
                        || state.capacity.is_some()
                        || with_runs.contains(&state.name)
                    {
                        locks.push(state);
                    }
                }
            }
            Ok(locks)
        })
    }

    fn set_capacity<'a>(
        &'a self,
        name: &'a str,
        capacity: u32,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            shedlock_core::validate_capacity(capacity)?;
            let capacity = capacity.to_string();
            self.settings_change(&SET_CAPACITY, name, "setting the capacity of", &[&capacity])
                .await?;
            tracing::info!(lock = %name, %capacity, "lock capacity set");
            Ok(())
        })
    }

    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let keys = self.keys(name);
            let mut invocation = PAUSE.key(keys.settings());
            invocation.key(keys.fence());
            let paused = self
                .run::<i64>(invocation, format!("pausing lock '{name}'"))
                .await?;
            if paused == 1 {
                tracing::info!(lock = %name, "lock paused");
            }
            Ok(())
        })
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            if self.settings_change(&RESUME, name, "resuming", &[]).await? == 1 {
                tracing::info!(lock = %name, "lock resumed");
            }
            Ok(())
        })
    }

    fn force_release<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, LockError>> {
        Box::pin(async move {
            let keys = self.keys(name);
            let mut invocation = FORCE_RELEASE.key(&keys.lock);
            invocation.key(keys.holders()).arg(RELEASE_CHANNEL);
            let released = self
                .run::<i64>(invocation, format!("force-releasing lock '{name}'"))
                .await?;
            tracing::warn!(lock = %name, holders = released, "lock force-released");
            Ok(usize::try_from(released).unwrap_or(0))
        })
    }

    fn run_history<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LockError>> {
        Box::pin(self.read_runs(name))
    }

    fn last_runs<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, LockError>> {
        Box::pin(self.read_last_runs(names))
    }

    fn last_tick<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, LockError>> {
        Box::pin(async move {
            let keys = self.keys(name);
            let mut read = Cmd::new();
            read.arg("HGET")
                .arg(keys.auxiliary_arg(TICK_SUFFIX))
                .arg("tick");
            let tick: Option<u64> = self
                .read(&read, || format!("reading the last tick of lock '{name}'"))
                .await?;
            Ok(tick.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
        })
    }
}
