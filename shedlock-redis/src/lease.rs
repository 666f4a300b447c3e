//! One acquisition's lease in Redis (its keys and unique value; released,
//! extended and given its fencing token by scripts that compare the value
//! first), and `PendingLease`: a lease not yet handed to a guard, given back
//! in the background if it never is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Cmd, Script};
use shedlock_core::{BackgroundRelease, BoxFuture, FinishedRun, Lease, LockError, MissedTicks};

use crate::connection::RedisConnection;
use crate::errors::store_error;
use crate::keys::{LockKeys, RENEWED_SUFFIX, RUNS_SUFFIX};
use crate::releases::RELEASE_CHANNEL;
use crate::replica_acks::{Acknowledgement, ReplicaAcks};
use crate::scripts::{
    EXTEND, EXTEND_SHARED, RECORD_RUN, RELEASE, RELEASE_RECORDING, RELEASE_SHARED,
    RELEASE_SHARED_RECORDING, TOKEN, evalsha, invoke, invoke_acknowledged,
};

/// One acquisition's lease: the lock's keys and the acquisition's unique value.
pub(crate) struct RedisLease {
    pub(crate) connection: RedisConnection,
    /// `host:port` of the server, for messages.
    pub(crate) server: Arc<str>,
    pub(crate) keys: LockKeys,
    /// Shared permits (kept in the holders hash) rather than the lock key.
    pub(crate) shared: bool,
    pub(crate) value: String,
    /// The fencing token, once known (0 until then): an exclusive lease's
    /// renewals stamp it for operators (see `extend.lua`).
    pub(crate) token: AtomicU64,
    /// `locked_by`, when runs are recorded in the lock's history
    /// ([`RedisLockProvider::with_run_history`](crate::RedisLockProvider::with_run_history)).
    pub(crate) history: Option<Arc<str>>,
    /// Replicas that must acknowledge an extension
    /// ([`RedisLockProvider::with_replica_acks`](crate::RedisLockProvider::with_replica_acks)).
    pub(crate) replica_acks: Option<ReplicaAcks>,
}

impl RedisLease {
    /// `release.lua` (or its shared variant), with the run's history key and
    /// entry after a run when runs are recorded.
    async fn release_recording(
        &self,
        keep_for: Duration,
        run: Option<&FinishedRun>,
    ) -> Result<bool, LockError> {
        let keep_ms = if keep_for.is_zero() {
            0
        } else {
            millis(keep_for)
        };
        let entry = run.zip(self.history.as_deref()).map(|(run, locked_by)| {
            let (head, tail) = run_entry(run, SystemTime::now(), locked_by);
            (head, run.outcome.as_str(), tail)
        });
        // A release that records no run runs the script without the
        // history's functions (less work for the server on every cycle).
        let (keys, args, exclusive, shared) = match &entry {
            Some(_) => (2, 6, &*RELEASE_RECORDING, &*RELEASE_SHARED_RECORDING),
            None => (1, 3, &*RELEASE, &*RELEASE_SHARED),
        };
        let data = 2 * self.keys.lock.len() + self.value.len() + 128;
        let (script, mut release) = if self.shared {
            let holders = self.keys.holders();
            let mut release = evalsha(shared, keys + 1, args, data + holders.len());
            release.arg(holders).arg(&self.keys.lock);
            (shared, release)
        } else {
            let mut release = evalsha(exclusive, keys, args, data);
            release.arg(&self.keys.lock);
            (exclusive, release)
        };
        if entry.is_some() {
            release.arg(self.keys.auxiliary_arg(RUNS_SUFFIX));
        }
        release.arg(&self.value).arg(keep_ms).arg(RELEASE_CHANNEL);
        if let Some((head, outcome, tail)) = entry {
            release.arg(head).arg(outcome).arg(tail);
        }
        invoke::<i64>(script, &release, &mut self.connection.clone())
            .await
            .map(|released| released == 1)
            .map_err(|err| {
                store_error(
                    &self.server,
                    &format!("releasing lock key '{}'", self.keys.lock),
                    &err,
                    "the lease ends at lock_at_most_for at the latest",
                )
            })
    }
}

/// A run's history entry in two parts around its outcome (`history.lua`):
/// `"<finished ms> <duration ms>"` of a run that finished at `finished_at`
/// by this process's wall clock, and `"<token, 0 none> <locked_by>"`.
fn run_entry(run: &FinishedRun, finished_at: SystemTime, locked_by: &str) -> (String, String) {
    let finished = finished_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_millis());
    let head = format!("{finished} {}", run.duration.as_millis());
    let tail = format!("{} {locked_by}", run.fencing_token.unwrap_or(0));
    (head, tail)
}

impl RedisLease {
    /// `record_run.lua`: `run`, finished at `finished_at`, into the lock's
    /// history (if it keeps one); `what` names it in an error.
    async fn record(
        &self,
        run: FinishedRun,
        finished_at: SystemTime,
        what: &str,
    ) -> Result<(), LockError> {
        let Some(locked_by) = &self.history else {
            return Ok(());
        };
        let (head, tail) = run_entry(&run, finished_at, locked_by);
        let runs = self.keys.auxiliary_arg(RUNS_SUFFIX);
        let outcome = run.outcome.as_str();
        let data = self.keys.lock.len() + head.len() + tail.len() + outcome.len() + 32;
        let mut record = evalsha(&RECORD_RUN, 1, 3, data);
        record.arg(runs).arg(head).arg(tail).arg(outcome);
        invoke::<i64>(&RECORD_RUN, &record, &mut self.connection.clone())
            .await
            .map(drop)
            .map_err(|err| {
                store_error(
                    &self.server,
                    &format!("recording {what} of lock key '{}'", self.keys.lock),
                    &err,
                    "it is missing from the lock's history",
                )
            })
    }

    pub(crate) fn lock_key(&self) -> &str {
        &self.keys.lock
    }

    /// Records the fencing token the acquisition handed out.
    pub(crate) fn set_token(&self, token: u64) {
        self.token.store(token, Ordering::Relaxed);
    }

    /// An `EVALSHA` of the exclusive or the shared variant of an operation on
    /// this lease, with its keys and value; the caller adds the rest.
    fn script_call(
        &self,
        exclusive: &'static Script,
        shared: &'static Script,
        args: usize,
    ) -> (&'static Script, Cmd) {
        let data = self.keys.lock.len() + self.value.len() + 64;
        if self.shared {
            // The lock key's shared marker follows the holders.
            let holders = self.keys.holders();
            let mut cmd = evalsha(shared, 2, args + 1, data + holders.len());
            cmd.arg(holders).arg(&self.keys.lock).arg(&self.value);
            (shared, cmd)
        } else {
            let mut cmd = evalsha(exclusive, 1, args + 1, data);
            cmd.arg(&self.keys.lock).arg(&self.value);
            (exclusive, cmd)
        }
    }
}

impl Lease for RedisLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let (script, extend) = if self.shared {
                let (script, mut extend) = self.script_call(&EXTEND, &EXTEND_SHARED, 1);
                extend.arg(millis(lock_at_most_for));
                (script, extend)
            } else {
                // The renewal stamp's key follows the lock key; the token follows the lease.
                let renewed = self.keys.auxiliary_arg(RENEWED_SUFFIX);
                let data = self.keys.lock.len() + renewed.len() + self.value.len() + 64;
                let mut extend = evalsha(&EXTEND, 2, 3, data);
                extend
                    .arg(&self.keys.lock)
                    .arg(renewed)
                    .arg(&self.value)
                    .arg(millis(lock_at_most_for))
                    .arg(self.token.load(Ordering::Relaxed));
                (&*EXTEND, extend)
            };
            let action = || format!("extending lock key '{}'", self.keys.lock);
            let connection = &mut self.connection.clone();
            match invoke_acknowledged::<i64>(script, &extend, self.replica_acks, connection).await {
                Ok((1, Acknowledgement::Enough)) => Ok(true),
                // Extended on the master only: a replica promoted now would
                // end the lease at its previous end, so it is not vouched for.
                Ok((1, Acknowledgement::Short(short))) => Err(short.error(
                    &self.server,
                    &action(),
                    "the lease was extended on the master only: on a failover it may end at its \
                     previous end",
                )),
                Ok(_) => Ok(false),
                Err(err) => Err(store_error(
                    &self.server,
                    &action(),
                    &err,
                    "the lease still ends at its previous end",
                )),
            }
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(self.release_recording(keep_for, None))
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(self.release_recording(keep_for, Some(run)))
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.record(*run, SystemTime::now(), "a lost run"))
    }

    fn record_missed<'a>(
        &'a self,
        missed: &'a MissedTicks,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        let (run, finished_at) = missed.as_run();
        Box::pin(self.record(run, finished_at, "missed ticks"))
    }

    /// `token.lua`: the token of an exclusive lease, issued only while the
    /// lock key still holds this acquisition's value (shared leases get
    /// theirs with the lease).
    fn issue_fencing_token(&self) -> BoxFuture<'_, Result<Option<u64>, LockError>> {
        Box::pin(async move {
            let (fence, settings) = (self.keys.fence(), self.keys.settings());
            let data = self.keys.lock.len() + fence.len() + settings.len() + 64;
            let mut issue = evalsha(&TOKEN, 3, 1, data);
            issue
                .arg(&self.keys.lock)
                .arg(fence)
                .arg(settings)
                .arg(&self.value);
            invoke::<i64>(&TOKEN, &issue, &mut self.connection.clone())
                .await
                .map(|token| {
                    let token = u64::try_from(token).ok().filter(|token| *token > 0);
                    if let Some(token) = token {
                        self.set_token(token);
                    }
                    token
                })
                .map_err(|err| {
                    store_error(
                        &self.server,
                        &format!("issuing the fencing token of lock key '{}'", self.keys.lock),
                        &err,
                        "no token was issued; the lease is unchanged",
                    )
                })
        })
    }
}

/// A lease that an acquisition took or may have taken and has not handed to
/// a guard yet: while its answer is out, while it is settled, while an
/// uncertain acquisition is cleaned up. Dropped armed (the caller gave up,
/// or the acquisition turned out not to stand), it is released in the
/// background, retried until the lease would have ended. [`disarm`]
/// (Self::disarm) takes the lease out for a guard, or because nothing was
/// taken.
pub(crate) struct PendingLease {
    lease: Arc<RedisLease>,
    /// How long a lease this acquisition took can last.
    lease_length: Duration,
    armed: bool,
}

impl PendingLease {
    pub(crate) fn new(lease: RedisLease, lease_length: Duration) -> Self {
        PendingLease {
            lease: Arc::new(lease),
            lease_length,
            armed: true,
        }
    }

    pub(crate) fn lease(&self) -> &RedisLease {
        &self.lease
    }

    /// The lease, no longer given back when this is dropped.
    pub(crate) fn disarm(mut self) -> Arc<RedisLease> {
        self.armed = false;
        self.lease.clone()
    }
}

impl Drop for PendingLease {
    fn drop(&mut self) {
        if self.armed {
            let lease: Arc<dyn Lease> = self.lease.clone();
            let until = Instant::now() + self.lease_length;
            BackgroundRelease::possibly_taken(self.lease.lock_key(), lease, until).spawn();
        }
    }
}

/// A duration in whole milliseconds, rounded up (a lease is never shorter than asked), at least 1.
pub(crate) fn millis(duration: Duration) -> u64 {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}
