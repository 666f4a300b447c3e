//! Run a scheduled job at most once at a time across every replica of a service.
//!
//! Put `#[scheduler_lock]` on an `async fn`: the first replica to take the lock
//! runs the body, the others get `Ok(None)` at once. The lock is a lease: it
//! always ends (`lock_at_most_for`), even if its holder dies, and it can be
//! kept past the end of a short run (`lock_at_least_for`) so replicas whose
//! schedulers fire a little apart do not run the same tick twice.
//!
//! ```
//! use std::time::Duration;
//! use shedlock::{InMemoryLockProvider, SchedulerLock, scheduler_lock};
//!
//! #[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m", lock_at_least_for = "30s")]
//! async fn nightly_report() -> Result<u32, String> {
//!     shedlock::assert_locked();
//!     Ok(42)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shedlock::LockError> {
//! // Once at startup; with the `redis` feature, use
//! // `shedlock::redis::RedisLockProvider::connect(url).await?` across replicas.
//! SchedulerLock::builder(InMemoryLockProvider::new())
//!     .default_lock_at_most_for(Duration::from_secs(600))
//!     .install()?;
//!
//! assert_eq!(nightly_report().await?, Some(Ok(42))); // ran here
//! assert_eq!(nightly_report().await?, None); // lock_at_least_for: skipped
//! # Ok(())
//! # }
//! ```
//!
//! Programmatic use goes through [`LockingTaskExecutor`] and a
//! [`LockConfiguration`]; stores implement [`LockProvider`].
//!
//! Beyond a mutex: `mode = "shared"` holders run together while an exclusive
//! holder keeps everyone out; `permits = k` takes k of a lock's `capacity`;
//! an operator changes the capacity at run time, or pauses a lock (capacity
//! 0), through [`admin::LockAdmin`] or the `shedlock` command.
//!
//! Rooms: the crate root holds what a job author uses; [`provider`] what a
//! provider author needs; [`admin`] what an operator's tool needs.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `redis` | [`redis::RedisLockProvider`] (standalone Redis, Cluster, Sentinel) |
//! | `redis-tls` | `rediss://` URLs for the Redis provider |
//! | `postgres` | [`sql::PostgresLockProvider`] (ShedLock's table on PostgreSQL) |
//! | `mysql` | [`sql::MySqlLockProvider`] (ShedLock's table on MySQL or MariaDB) |
//! | `sqlite` | [`sql::SqliteLockProvider`] (an SQLite file shared by the processes of one machine) |
//! | `cron` | [`cron::LockedJobs`]: tokio-cron-scheduler jobs that run each tick on one replica, and give their locks back when the scheduler stops |
//!
//! The in-memory provider needs no feature; no provider is on by default.

pub use shedlock_core::{
    ExecutionOptions, InMemoryLockProvider, Leader, LeaderElection, Leadership, LockConfiguration,
    LockError, LockGuard, LockInfo, LockMode, LockProvider, LockingTaskExecutor, MAX_NAME_LEN,
    MAX_PERMITS, SchedulerLock, SchedulerLockBuilder, WhenHeld, assert_locked, current_lock,
    extend_active_lock, is_lease_lost, lease_lost,
};
pub use shedlock_macros::scheduler_lock;

/// What a lock provider is made of, for writing one: the trait, the lease a
/// guard holds, waiters and release notifications. A third-party provider
/// depends on `shedlock` alone; its tests can run the conformance suites of
/// the `shedlock-test-support` crate.
pub mod provider {
    pub use shedlock_core::identity;
    pub use shedlock_core::{
        BackgroundRelease, BoxError, BoxFuture, Lease, LockConfiguration, LockError, LockGuard,
        LockMode, LockProvider, ReleaseNotifier, ReleaseNotifiers, ReleaseWatch, StoreCause,
        StoreFailure, Waiter,
    };
}

/// What an operator's tool needs: a lock's state, its capacity, pause and
/// resume, and force-release (the `shedlock` command is built on it).
pub mod admin {
    pub use shedlock_core::{LockAdmin, LockHolder, LockState, validate_capacity};
}

/// The Redis provider (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    /// The `redis` crate, for building a `Client` or an `AsyncConnectionConfig`.
    pub use shedlock_redis::redis as client;
    pub use shedlock_redis::{
        DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, LockValue, RedisLockProvider,
    };
}

/// The SQL providers (features `postgres`, `mysql`, `sqlite`), on ShedLock's
/// `shedlock` table.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub mod sql {
    #[cfg(feature = "mysql")]
    pub use shedlock_sql::MySqlLockProvider;
    #[cfg(feature = "postgres")]
    pub use shedlock_sql::PostgresLockProvider;
    /// The `sqlx` crate, for building a pool.
    pub use shedlock_sql::sqlx;
    #[cfg(feature = "sqlite")]
    pub use shedlock_sql::{DEFAULT_BUSY_TIMEOUT, SqliteLockProvider};
    pub use shedlock_sql::{DEFAULT_STATEMENT_TIMEOUT, DEFAULT_TABLE_NAME, MAX_SQL_NAME_LEN};
}

/// Locked jobs for tokio-cron-scheduler (feature `cron`): every replica
/// schedules the job, one runs each tick, and stopping the scheduler cancels
/// runs in progress and gives their locks back. See [`cron::LockedJobs`].
#[cfg(feature = "cron")]
pub mod cron {
    pub use shedlock_cron::{JobOutput, LockedJobs, tokio_cron_scheduler};
}

#[doc(hidden)]
pub mod __private {
    pub use shedlock_core::private::*;
}
