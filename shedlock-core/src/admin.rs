//! Operators' view of locks: state, capacity, pause and resume, force-release.

use std::time::{Duration, SystemTime};

use crate::{BoxFuture, LockError, LockMode, RunRecord};

/// One lock as the store sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    /// The lock's name.
    pub name: String,
    /// Who holds the lock now: one exclusive holder, or any number of shared ones.
    pub holders: Vec<LockHolder>,
    /// The capacity stored for the lock, if an operator (or a pause) set one;
    /// otherwise each acquisition brings its own default (see
    /// [`LockConfiguration::with_capacity`](crate::LockConfiguration::with_capacity)).
    pub capacity: Option<u32>,
    /// Whether the lock is paused (capacity 0): nobody acquires it.
    pub paused: bool,
    /// Exclusive holders waiting for their turn; new shared holders wait behind them.
    pub exclusive_waiters: u32,
}

impl LockState {
    /// The permits taken by the current holders (an exclusive holder counts as 1).
    pub fn permits_held(&self) -> u64 {
        self.holders
            .iter()
            .map(|holder| u64::from(holder.mode.permits().unwrap_or(1)))
            .sum()
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        !self.holders.is_empty()
    }
}

/// One holder of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Who holds it (host name and process id by default).
    pub locked_by: String,
    /// When the holder took it, by the holder's clock, if the store recorded it.
    pub locked_at: Option<SystemTime>,
    /// How long the lease has left, by the store's clock; `None`: it has no end
    /// (a key written without expiry by another tool).
    pub lease_left: Option<Duration>,
    /// Exclusive, or shared with some permits.
    pub mode: LockMode,
    /// The holder's fencing token, where the store keeps it per holder (a
    /// leader's term). Redis knows an exclusive holder's token from its first
    /// renewal on; shared holders' always.
    pub fencing_token: Option<u64>,
    /// How long ago, by the store's clock, the holder last renewed (extended)
    /// its lease, or took it if it never renewed it; `None` when the store
    /// does not know (Redis: an exclusive holder before its first renewal, a
    /// shared holder, a key written by another tool).
    pub renewed_ago: Option<Duration>,
    /// How many times the holder renewed its lease, where the store counts
    /// them: leaders, scope owners and other keep-alive holders renew; most
    /// jobs never do. `None`: unknown (see [`renewed_ago`](Self::renewed_ago)).
    pub renewals: Option<u64>,
}

/// Operations on locks for operators and tooling (the `shedlock` command):
/// read a lock's state, change its capacity, pause and resume it, and
/// force-release it. Implemented by every built-in provider (Redis,
/// memory, PostgreSQL, MySQL/MariaDB, SQLite).
///
/// Changes take effect for the next acquisitions; holders keep their leases
/// (except on [`force_release`](Self::force_release)). Waiting jobs wake when
/// a change lets them in.
pub trait LockAdmin: Send + Sync {
    /// The state of the lock `name` (an unknown lock has no holders and no capacity).
    fn lock_state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<LockState, LockError>>;

    /// Every lock the store knows of: held, with a stored capacity, or with
    /// recorded runs ([`run_history`](Self::run_history)), sorted by name.
    fn list_locks(&self) -> BoxFuture<'_, Result<Vec<LockState>, LockError>>;

    /// Stores the capacity of `name`; 0 pauses it. A capacity set this way
    /// wins over every acquisition's default.
    fn set_capacity<'a>(
        &'a self,
        name: &'a str,
        capacity: u32,
    ) -> BoxFuture<'a, Result<(), LockError>>;

    /// Pauses `name` (capacity 0): holders finish their runs, nobody else
    /// acquires it until [`resume`](Self::resume). Works for ordinary locks too.
    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>>;

    /// Ends a pause: the capacity goes back to what it was before it, and
    /// waiting jobs start. Does nothing to a lock that is not paused.
    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>>;

    /// Ends every lease of `name` now, whoever holds it, and returns how many
    /// there were. The holders are not told: their jobs run on, and their
    /// next extension or release finds the lease gone. Fencing tokens of the
    /// next holders are still greater, so a fenced store refuses the old ones.
    fn force_release<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, LockError>>;

    /// The last runs under the lock `name` (at most
    /// [`RUN_HISTORY_LEN`](crate::RUN_HISTORY_LEN)), the newest first: when
    /// each started and finished, how it ended, who ran it, its token.
    ///
    /// # Errors
    ///
    /// Store errors; [`LockError::Unsupported`] from a store that keeps no history.
    fn run_history<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LockError>> {
        let _ = name;
        Box::pin(async {
            Err(LockError::Unsupported {
                store: "chosen",
                what: "run history",
                advice: "use a provider that records runs (Redis, memory, or an SQL provider with with_run_history(true))",
            })
        })
    }

    /// The last tick claimed under the lock `name`
    /// ([`LockConfiguration::for_tick`](crate::LockConfiguration::for_tick)),
    /// to the millisecond; `None` when none was. The default (a store
    /// without tick claims) knows none.
    ///
    /// # Errors
    ///
    /// Store errors.
    fn last_tick<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, LockError>> {
        let _ = name;
        Box::pin(async { Ok(None) })
    }

    /// The last recorded run of each of `names`, in the order given (`None`
    /// where none is recorded): what `shedlock list` shows beside each lock.
    /// The stores read them in a bounded number of round trips (Redis: one
    /// pipeline per 500 names; SQL: one query); this default reads
    /// [`run_history`](Self::run_history) once per name.
    ///
    /// # Errors
    ///
    /// Store errors; [`LockError::Unsupported`] from a store that keeps no history.
    fn last_runs<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, LockError>> {
        Box::pin(async move {
            let mut runs = Vec::with_capacity(names.len());
            for name in names {
                runs.push(self.run_history(name).await?.into_iter().next());
            }
            Ok(runs)
        })
    }
}

/// `Arc<A>` and `Box<A>` administer what they hold.
macro_rules! forward_lock_admin {
    ($($pointer:ident),*) => {$(
        impl<A: LockAdmin + ?Sized> LockAdmin for $pointer<A> {
            fn lock_state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<LockState, LockError>> {
                (**self).lock_state(name)
            }
            fn list_locks(&self) -> BoxFuture<'_, Result<Vec<LockState>, LockError>> {
                (**self).list_locks()
            }
            fn set_capacity<'a>(&'a self, name: &'a str, capacity: u32) -> BoxFuture<'a, Result<(), LockError>> {
                (**self).set_capacity(name, capacity)
            }
            fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
                (**self).pause(name)
            }
            fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
                (**self).resume(name)
            }
            fn force_release<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, LockError>> {
                (**self).force_release(name)
            }
            fn run_history<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, LockError>> {
                (**self).run_history(name)
            }
            fn last_runs<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, LockError>> {
                (**self).last_runs(names)
            }
            fn last_tick<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, LockError>> {
                (**self).last_tick(name)
            }
        }
    )*};
}

use std::sync::Arc;
forward_lock_admin!(Arc, Box);
