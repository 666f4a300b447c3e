//! Replica acknowledgement
//! ([`RedisLockProvider::with_replica_acks`](crate::RedisLockProvider::with_replica_acks)):
//! the `WAIT` sent after a lease's write in the same round trip, and what its
//! answer means for the lease.

use std::time::Duration;

use redis::{Cmd, ErrorKind, RedisError, Value};
use shedlock_core::{LockError, StoreFailure};

use crate::errors::{STORE, store_error};
use crate::lease::millis;

/// How many replicas must acknowledge a lease's write, and how long `WAIT`
/// waits for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaAcks {
    replicas: usize,
    timeout: Duration,
}

impl ReplicaAcks {
    /// At least one replica, and a timeout (`WAIT` with 0 would wait forever).
    pub(crate) fn new(replicas: usize, timeout: Duration) -> Result<Self, LockError> {
        if replicas == 0 {
            return Err(LockError::InvalidConfiguration(
                "with_replica_acks: replicas must be at least 1 (leave replica acknowledgement \
                 unset to take leases on the master alone)"
                    .to_owned(),
            ));
        }
        if timeout.is_zero() {
            return Err(LockError::InvalidConfiguration(
                "with_replica_acks: the timeout must be above zero (WAIT with 0 waits forever); \
                 keep it well below the response timeout"
                    .to_owned(),
            ));
        }
        Ok(ReplicaAcks { replicas, timeout })
    }

    /// `WAIT replicas timeout_ms`: answers how many replicas have every write
    /// this connection made so far, once that many do or the timeout passed.
    pub(crate) fn wait(&self) -> Cmd {
        let mut wait = Cmd::with_capacity(3, 32);
        wait.arg("WAIT")
            .arg(self.replicas)
            .arg(millis(self.timeout));
        wait
    }

    /// Reads `WAIT`'s answer (`None`: the pipeline had none).
    pub(crate) fn read(&self, answer: Option<&Value>) -> Acknowledgement {
        let acknowledged = match answer {
            Some(Value::Int(count)) => Ok(usize::try_from(*count).unwrap_or(0)),
            Some(Value::ServerError(err)) => Err(RedisError::from(err.clone())),
            other => Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected answer to WAIT",
                format!("{other:?}"),
            ))),
        };
        match acknowledged {
            Ok(count) if count >= self.replicas => Acknowledgement::Enough,
            acknowledged => Acknowledgement::Short(Shortfall {
                acknowledged,
                asked: *self,
            }),
        }
    }
}

/// Whether a write was acknowledged by as many replicas as asked.
#[derive(Debug)]
pub(crate) enum Acknowledgement {
    /// As many replicas as asked have it, or no acknowledgement was asked.
    Enough,
    /// Fewer replicas acknowledged it, or `WAIT` failed: a failover may lose it.
    Short(Shortfall),
}

/// A write fewer replicas acknowledged than asked.
#[derive(Debug)]
pub(crate) struct Shortfall {
    /// How many did, or why `WAIT` could not tell.
    acknowledged: Result<usize, RedisError>,
    asked: ReplicaAcks,
}

impl Shortfall {
    /// The error of `action` at `server`, with `consequence`: what was done
    /// about the write.
    pub(crate) fn error(&self, server: &str, action: &str, consequence: &str) -> LockError {
        let ReplicaAcks { replicas, timeout } = self.asked;
        match &self.acknowledged {
            Ok(count) => StoreFailure {
                store: STORE,
                action: action.to_owned(),
                what_happened: format!(
                    "{count} of {replicas} replica(s) asked acknowledged the write within {} \
                     (WAIT at Redis at {server}), so a failover could lose it",
                    humantime::format_duration(timeout)
                ),
                consequence: consequence.to_owned(),
            }
            .into(),
            Err(err) => store_error(
                server,
                action,
                err,
                &format!("WAIT for {replicas} replica(s) failed; {consequence}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks() -> ReplicaAcks {
        ReplicaAcks::new(2, Duration::from_millis(150)).unwrap_or_else(|err| panic!("{err}")) // allow-panic: unit test
    }

    #[test]
    fn no_replicas_or_no_timeout_is_a_configuration_error() {
        for (replicas, timeout) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
            let err = ReplicaAcks::new(replicas, timeout).unwrap_err();
            assert!(
                matches!(&err, LockError::InvalidConfiguration(message) if message.contains("with_replica_acks")),
                "{err}"
            );
        }
    }

    #[test]
    fn wait_asks_for_the_replicas_within_the_timeout_in_milliseconds() {
        assert_eq!(
            acks().wait().get_packed_command(),
            redis::cmd("WAIT").arg(2).arg(150).get_packed_command()
        );
    }

    #[test]
    fn fewer_acknowledgements_than_asked_or_an_error_fall_short() {
        assert!(matches!(
            acks().read(Some(&Value::Int(2))),
            Acknowledgement::Enough
        ));
        assert!(matches!(
            acks().read(Some(&Value::Int(3))),
            Acknowledgement::Enough
        ));
        let Acknowledgement::Short(short) = acks().read(Some(&Value::Int(1))) else {
            panic!("1 of 2 acknowledged counted as enough"); // allow-panic: unit test
        };
        let message = short
            .error(
                "127.0.0.1:6379",
                "acquiring lock 'report'",
                "the lock was not taken",
            )
            .to_string();
        assert_eq!(
            message,
            "lock store error (redis) while acquiring lock 'report': 1 of 2 replica(s) asked \
             acknowledged the write within 150ms (WAIT at Redis at 127.0.0.1:6379), so a \
             failover could lose it; the lock was not taken"
        );
        for answer in [None, Some(&Value::Nil), Some(&Value::Int(-1))] {
            assert!(
                matches!(acks().read(answer), Acknowledgement::Short(_)),
                "{answer:?}"
            );
        }
    }
}
