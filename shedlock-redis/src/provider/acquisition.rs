//! The acquisition protocol: a plain exclusive acquisition in one round
//! trip of plain commands, settled by a script when it may not stand; the
//! acquisition script for waiting, shared and counted locks; with replica
//! acknowledgement, `WAIT` in the same round trip; and what happens to a
//! lease whose answer was lost or that too few replicas acknowledged.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use shedlock_core::{GrantedLease, Lease, LockConfiguration, LockError, LockGuard, Waiter};

use super::RedisLockProvider;
use crate::errors::{reply_may_be_lost, store_error, what_happened};
use crate::keys::{
    FENCE_SUFFIX, HOLDERS_SUFFIX, LockKeys, SETTINGS_SUFFIX, TICK_SUFFIX, WAITERS_SUFFIX,
};
use crate::lease::{PendingLease, RedisLease, millis};
use crate::replica_acks::{Acknowledgement, Shortfall};
use crate::scripts::{ACQUIRE, CLAIM_TICK, SETTLE, evalsha, invoke_acknowledged};
use crate::value::{WAITED_MARK, new_lock_value};

impl RedisLockProvider {
    /// One acquisition: exclusive or shared, with a waiter's place in the queue.
    pub(super) async fn acquire(
        &self,
        config: &LockConfiguration,
        waiter: Option<&Waiter>,
    ) -> Result<Option<LockGuard>, LockError> {
        config.check_tick()?;
        let keys = self.keys(config.name());
        // A capacity of 0 in the configuration is a pause only the script
        // sees. On a Cluster, a pipeline redirected while the lock's slot
        // moves would go out command by command (`ASKING` covers only the
        // next one), so acquisitions are one script, which the cluster client
        // follows to the right node whole.
        if waiter.is_none()
            && config.tick_millis().is_none()
            && config.mode().permits().is_none()
            && config.capacity() != Some(0)
            && !self.connection.is_cluster()
            && self.set_nx_get.load(Ordering::Relaxed)
        {
            return self.acquire_exclusive(config, keys).await;
        }
        // Boxed, as every path off the plain one: the plain acquisition's
        // future stays small (it is moved into its box on every call).
        Box::pin(self.acquire_scripted(config, waiter, keys)).await
    }

    fn new_lease(&self, keys: LockKeys, shared: bool) -> RedisLease {
        RedisLease {
            connection: self.connection.clone(),
            server: self.server.clone(),
            value: new_lock_value(&self.locked_by),
            keys,
            shared,
            token: Default::default(),
            history: self.run_history.then(|| self.locked_by.clone()),
            replica_acks: self.replica_acks,
        }
    }

    /// An exclusive acquisition that does not wait, in one round trip of
    /// two plain commands (no script):
    ///
    /// - `SET lock value NX PX lease GET` takes the lock, or answers the
    ///   holder's value: this acquisition's own when a client resent it after
    ///   a lost reply, so it still owns the lock; ShedLock's marker while
    ///   shared holders have it.
    /// - `EXISTS settings holders`, which runs after the `SET`: stored
    ///   settings (a pause, capacity 0, whoever stored it; or a capacity) or
    ///   shared holders (even when their marker in the lock key is gone) send
    ///   a taken lease to `settle.lua`, which gives it back if the lock is
    ///   paused or shared holders are live. One command for both reads: the
    ///   server's work per cycle is what bounds throughput.
    /// - With replica acknowledgement, `WAIT`: the lease counts only once
    ///   enough replicas have it.
    ///
    /// The fencing token is issued on request (`token.lua`), so a job that
    /// never asks pays nothing for it. An answer that came too late to vouch
    /// for the lease is renewed or given back by core's one rule
    /// ([`GrantedLease::vouch`](shedlock_core::GrantedLease::vouch)).
    async fn acquire_exclusive(
        &self,
        config: &LockConfiguration,
        keys: LockKeys,
    ) -> Result<Option<LockGuard>, LockError> {
        let lease = self.new_lease(keys, false);
        let settings = lease.keys.auxiliary_arg(SETTINGS_SUFFIX);
        let holders = lease.keys.auxiliary_arg(HOLDERS_SUFFIX);
        let mut set = Cmd::with_capacity(7, lease.lock_key().len() + lease.value.len() + 32);
        set.arg("SET")
            .arg(lease.lock_key())
            .arg(&lease.value)
            .arg("NX")
            .arg("PX")
            .arg(millis(config.lock_at_most_for()))
            .arg("GET");
        let mut either = Cmd::with_capacity(3, settings.len() + holders.len() + 8);
        either.arg("EXISTS").arg(settings).arg(holders);
        let mut pipe = redis::Pipeline::with_capacity(2 + usize::from(self.replica_acks.is_some()));
        pipe.add_command(set).add_command(either);
        if let Some(acks) = self.replica_acks {
            // After the SET on the same connection: it waits for the lease's write.
            pipe.add_command(acks.wait());
        }
        // From here until a guard has it, a lease this acquisition took is
        // given back if the caller drops this future.
        let pending = PendingLease::new(lease, config.lock_at_most_for());
        let requested_at = Instant::now();
        let reply = self
            .connection
            .clone()
            .req_packed_commands(&pipe, 0, pipe.len())
            .await;
        let values = match reply {
            Ok(values) => values,
            Err(err) => {
                return Err(
                    Box::pin(self.failed_acquisition(config, pending, requested_at, err)).await,
                );
            }
        };
        match ExclusiveReply::read(&values, &pending.lease().value) {
            ExclusiveReply::Taken { may_stand } => {
                let acknowledgement = match self.replica_acks {
                    Some(acks) => acks.read(values.get(2)),
                    None => Acknowledgement::Enough,
                };
                let pending = self.acknowledged(config, pending, acknowledgement).await?;
                if !may_stand {
                    return Box::pin(self.settle(config, pending)).await;
                }
                Ok(
                    GrantedLease::with_shared_lease(config, None, requested_at, pending.disarm())
                        .vouch()
                        .await,
                )
            }
            ExclusiveReply::Held => {
                pending.disarm(); // nothing was taken
                Ok(None)
            }
            ExclusiveReply::NoSetNxGet => {
                let keys = pending.disarm().keys.clone(); // nothing was set
                self.set_nx_get.store(false, Ordering::Relaxed);
                tracing::info!(
                    server = %self.server,
                    "Redis does not take SET NX GET (before 7.0); exclusive locks are taken by script"
                );
                Box::pin(self.acquire_scripted(config, None, keys)).await
            }
            ExclusiveReply::Failed(err) => {
                pending.disarm(); // the SET failed: nothing was set
                Err(self.not_taken(config, &err))
            }
        }
    }

    /// A taken lease that may not stand (a pause, shared holders):
    /// `settle.lua` keeps and renews it, or gives it back.
    async fn settle(
        &self,
        config: &LockConfiguration,
        pending: PendingLease,
    ) -> Result<Option<LockGuard>, LockError> {
        let lease = pending.lease();
        let settings = lease.keys.auxiliary_arg(SETTINGS_SUFFIX);
        let holders = lease.keys.auxiliary_arg(HOLDERS_SUFFIX);
        let data = lease.lock_key().len() + settings.len() + holders.len() + lease.value.len();
        let mut settle = evalsha(&SETTLE, 3, 3, data + 32);
        settle
            .arg(lease.lock_key())
            .arg(settings)
            .arg(holders)
            .arg(&lease.value)
            .arg(millis(config.lock_at_most_for()))
            .arg(config.capacity().map_or(-1, i64::from));
        let (reply, requested_at) = self.timed(&SETTLE, &settle).await;
        match reply {
            Ok((1, acknowledgement)) => {
                // Kept and renewed: the renewal is what must be acknowledged now.
                let pending = self.acknowledged(config, pending, acknowledgement).await?;
                Ok(
                    GrantedLease::with_shared_lease(config, None, requested_at, pending.disarm())
                        .vouch()
                        .await,
                )
            }
            Ok((answer, _)) => {
                let lock_key = pending.disarm().keys.lock.clone(); // the script removed it
                match answer {
                    0 => tracing::debug!(lock = %config.name(), "lock paused (capacity 0)"),
                    -1 => tracing::warn!(
                        lock = %config.name(),
                        "lock lease ended before its late answer arrived; not acquired"
                    ),
                    _ => tracing::debug!(lock = %config.name(), "lock held by shared holders"),
                }
                self.releases
                    .note_lease_end(&lock_key, lease_end_hint(answer));
                Ok(None)
            }
            Err(err) if reply_may_be_lost(&err) => Err(self
                .failed_acquisition(config, pending, requested_at, err)
                .await),
            // `pending` gives the lease back as it goes.
            Err(err) => Err(store_error(
                &self.server,
                &format!("acquiring lock '{}'", config.name()),
                &err,
                "the lease taken is released",
            )),
        }
    }

    /// The acquisition script: waiting, shared and counted acquisitions,
    /// exclusive ones on servers without `SET NX GET` (before Redis 7), and
    /// the claims of ticks (with the tick claimed before).
    async fn acquire_scripted(
        &self,
        config: &LockConfiguration,
        waiter: Option<&Waiter>,
        keys: LockKeys,
    ) -> Result<Option<LockGuard>, LockError> {
        let permits = config.mode().permits();
        let waiter_id = waiter.map_or("", Waiter::id);
        let tick = config.tick_millis();
        let auxiliary = [
            FENCE_SUFFIX,
            HOLDERS_SUFFIX,
            WAITERS_SUFFIX,
            SETTINGS_SUFFIX,
            TICK_SUFFIX,
        ]
        .map(|suffix| keys.auxiliary_arg(suffix));
        // The tick record is a key of the tick's claim alone.
        let auxiliary = &auxiliary[..if tick.is_some() { 5 } else { 4 }];
        let data = keys.lock.len() + auxiliary.iter().map(|key| key.len()).sum::<usize>();
        let (script, args) = match tick {
            Some(_) => (&*CLAIM_TICK, 7),
            None => (&*ACQUIRE, 6),
        };
        let mut acquire = evalsha(
            script,
            1 + auxiliary.len(),
            args,
            data + waiter_id.len() + 128,
        );
        acquire.arg(&keys.lock);
        for key in auxiliary {
            acquire.arg(key);
        }
        let lease = self.new_lease(keys, permits.is_some());
        acquire
            .arg(&lease.value)
            .arg(millis(config.lock_at_most_for()))
            .arg(permits.unwrap_or(0))
            .arg(config.capacity().map_or(-1, i64::from))
            .arg(waiter_id)
            .arg(waiter.map_or(0, |waiter| millis(waiter.hold_place_for())));
        if let Some(tick) = tick {
            acquire.arg(tick);
        }
        let pending = PendingLease::new(lease, config.lock_at_most_for());
        // A tick's claim answers the tick claimed before too (-1: none).
        let (reply, requested_at) = match tick {
            Some(_) => self.timed::<(i64, i64)>(script, &acquire).await,
            None => {
                let (reply, requested_at) = self.timed::<i64>(script, &acquire).await;
                let reply = reply.map(|(answer, acknowledgement)| ((answer, -1), acknowledgement));
                (reply, requested_at)
            }
        };
        if let Ok(((token, _), _)) = &reply
            && let Ok(token) = u64::try_from(*token)
        {
            pending.lease().set_token(token);
        }
        match reply {
            Ok(((token, previous_tick), acknowledgement)) if token > 0 => {
                let pending = self.acknowledged(config, pending, acknowledgement).await?;
                let token = Some(token.unsigned_abs());
                let granted =
                    GrantedLease::with_shared_lease(config, token, requested_at, pending.disarm())
                        .after_tick((previous_tick >= 0).then_some(previous_tick));
                Ok(granted.vouch().await)
            }
            Ok(((held, _), _)) => {
                if held == 0 {
                    tracing::debug!(lock = %config.name(), "lock paused (capacity 0)");
                }
                let lock_key = pending.disarm().keys.lock.clone(); // nothing was taken
                self.releases
                    .note_lease_end(&lock_key, lease_end_hint(held));
                Ok(None)
            }
            Err(err) => Err(self
                .failed_acquisition(config, pending, requested_at, err)
                .await),
        }
    }

    /// Runs an acquisition script that answers a number (followed by `WAIT`
    /// with replica acknowledgement), with the instant just before it was
    /// sent (the guard counts its lease from there).
    async fn timed<T: FromRedisValue>(
        &self,
        script: &Script,
        cmd: &Cmd,
    ) -> (redis::RedisResult<(T, Acknowledgement)>, Instant) {
        let requested_at = Instant::now();
        let connection = &mut self.connection.clone();
        let reply = invoke_acknowledged::<T>(script, cmd, self.replica_acks, connection).await;
        (reply, requested_at)
    }

    /// A lease this acquisition took, kept only when as many replicas as
    /// asked acknowledged its write
    /// ([`with_replica_acks`](RedisLockProvider::with_replica_acks)); else it
    /// is given back and the acquisition fails: the lock was not taken.
    async fn acknowledged(
        &self,
        config: &LockConfiguration,
        pending: PendingLease,
        acknowledgement: Acknowledgement,
    ) -> Result<PendingLease, LockError> {
        match acknowledgement {
            Acknowledgement::Enough => Ok(pending),
            Acknowledgement::Short(short) => {
                Err(Box::pin(self.not_acknowledged(config, pending, short)).await)
            }
        }
    }

    /// Gives back a lease too few replicas acknowledged: the acquisition's error.
    async fn not_acknowledged(
        &self,
        config: &LockConfiguration,
        pending: PendingLease,
        short: Shortfall,
    ) -> LockError {
        let consequence = match pending.lease().release(Duration::ZERO).await {
            Ok(_) => {
                pending.disarm(); // given back, or already ended
                "the lock was not taken (the lease was given back)"
            }
            Err(_) => {
                drop(pending); // given back in the background
                "the lock was not taken (the lease is being given back)"
            }
        };
        let err = short.error(
            &self.server,
            &format!("acquiring lock '{}'", config.name()),
            consequence,
        );
        tracing::warn!(lock = %config.name(), error = %err, "lock acquisition not acknowledged by enough replicas");
        err
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

    /// An acquisition without an answer: a plain store error when the
    /// server answered with one (nothing was taken), else settled by its
    /// value. After a reply that may have been lost, whatever the
    /// acquisition may have taken is released (the value is unique, so only
    /// that acquisition's lease can match), then the failure reported:
    /// `released` is true only when the lease was seen and removed. "Nothing
    /// found" may mean the acquisition has not landed yet, so the lease stays
    /// pending and is released in the background until it would have ended,
    /// as it is if this future is dropped while it waits.
    async fn failed_acquisition(
        &self,
        config: &LockConfiguration,
        pending: PendingLease,
        requested_at: Instant,
        err: RedisError,
    ) -> LockError {
        if !reply_may_be_lost(&err) {
            pending.disarm(); // the server answered with an error: nothing was taken
            return self.not_taken(config, &err);
        }
        let name = config.name().to_owned();
        let reason = what_happened(&self.server, &err);
        let released = matches!(pending.lease().release(Duration::ZERO).await, Ok(true));
        if released {
            pending.disarm();
            tracing::warn!(lock = %name, %reason, "lock acquisition uncertain; the lease it took was released");
        } else {
            tracing::error!(
                lock = %name, %reason, waited = ?requested_at.elapsed(),
                "lock acquisition uncertain; releasing any lease it takes in the background"
            );
            drop(pending);
        }
        LockError::AcquisitionUncertain {
            name,
            reason,
            released,
        }
    }
}

/// What the one-round-trip exclusive acquisition answered.
#[derive(Debug)]
enum ExclusiveReply {
    /// The lock is this acquisition's; `may_stand` is false when the lock has
    /// stored settings (perhaps a pause) or shared holders (perhaps live), or
    /// that could not be read.
    Taken { may_stand: bool },
    /// Another holder has it.
    Held,
    /// The server is older than Redis 7 (no `SET .. NX .. GET`); nothing was set.
    NoSetNxGet,
    /// The `SET` failed; nothing was set.
    Failed(RedisError),
}

impl ExclusiveReply {
    /// Reads the answers of `SET .. NX PX .. GET` and `EXISTS settings
    /// holders` for the lock value `ours`.
    fn read(values: &[Value], ours: &str) -> ExclusiveReply {
        let taken = ExclusiveReply::Taken {
            may_stand: matches!(values.get(1), Some(Value::Int(0))),
        };
        match values.first() {
            Some(Value::Nil) => taken,
            // The holder's value: our own when a client resent this
            // acquisition (perhaps marked by a waiter since: acquire.lua).
            Some(Value::BulkString(held))
                if held
                    .strip_prefix(ours.as_bytes())
                    .is_some_and(|rest| rest.is_empty() || rest == WAITED_MARK.as_bytes()) =>
            {
                taken
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

/// When the soonest holder's lease ends, from a refused acquisition's answer
/// (-2 - ms left of it; -1 or 0: no end known).
fn lease_end_hint(answer: i64) -> Option<Instant> {
    (-2i64)
        .checked_sub(answer)
        .and_then(|left| u64::try_from(left).ok())
        .map(|left| Instant::now() + Duration::from_millis(left))
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
        let neither = reply(b":0\r\n");
        let read = |set: &[u8]| ExclusiveReply::read(&[reply(set), neither.clone()], ours);
        assert!(matches!(
            read(b"$-1\r\n"),
            ExclusiveReply::Taken { may_stand: true }
        ));
        let resent = format!("${}\r\n{ours}\r\n", ours.len());
        assert!(matches!(
            read(resent.as_bytes()),
            ExclusiveReply::Taken { may_stand: true }
        ));
        let marked = format!("{ours}{WAITED_MARK}");
        let resent_marked = format!("${}\r\n{marked}\r\n", marked.len());
        assert!(matches!(
            read(resent_marked.as_bytes()),
            ExclusiveReply::Taken { may_stand: true }
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
    }

    #[test]
    fn stored_settings_shared_holders_or_an_unreadable_check_send_a_taken_lease_to_settle() {
        let ours = "ADDED:2026-01-01T00:00:00.000Z@host:1;id=a";
        let read = |either: &[u8]| ExclusiveReply::read(&[reply(b"$-1\r\n"), reply(either)], ours);
        let stands = |reply| matches!(reply, ExclusiveReply::Taken { may_stand: true });
        assert!(stands(read(b":0\r\n")));
        // Settings (perhaps a pause), shared holders (marker or not), or both.
        assert!(!stands(read(b":1\r\n")));
        assert!(!stands(read(b":2\r\n")));
        // A check that failed counts as a reason to settle.
        assert!(!stands(read(b"-ERR\r\n")));
    }

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::ZERO), 1);
    }
}
