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
//! | `metrics` | counters, histograms and a gauge of lock attempts and runs on the `metrics` facade ([`metrics`](mod@metrics)) |
//!
//! The in-memory provider needs no feature; no provider is on by default.

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use shedlock_core::{
    ExecutionOptions, InMemoryLockProvider, Leader, LeaderElection, Leadership, LockConfiguration,
    LockError, LockGuard, LockInfo, LockMode, LockProvider, LockingTaskExecutor, MAX_NAME_LEN,
    MAX_PERMITS, MissedBetween, MissedTicks, OwnedScope, SchedulerLock, SchedulerLockBuilder,
    WhenHeld, assert_locked, current_lock, extend_active_lock, is_lease_lost, lease_lost,
    missed_every, run_for_tick,
};
pub use shedlock_macros::scheduler_lock;

/// What a lock provider is made of, for writing one: the trait, the lease a
/// guard holds, waiters and release notifications. A third-party provider
/// depends on `shedlock` alone; its tests can run the conformance suites of
/// the `shedlock-test-support` crate.
pub mod provider {
    pub use shedlock_core::identity;
    pub use shedlock_core::{
        BackgroundRelease, BoxError, BoxFuture, FinishedRun, GrantedLease, Lease,
        LockConfiguration, LockError, LockGuard, LockMode, LockProvider, ReleaseNotifier,
        ReleaseNotifiers, ReleaseWatch, RunOutcome, StoreCause, StoreFailure, Waiter,
        validate_capacity,
    };
}

/// What an operator's tool needs: a lock's state, its capacity, pause and
/// resume, force-release, and its last runs (the `shedlock` command is built on it).
pub mod admin {
    pub use shedlock_core::{
        LockAdmin, LockHolder, LockState, RUN_HISTORY_LEN, RunOutcome, RunRecord,
    };
}

/// The Redis provider (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    #[doc(hidden)]
    pub use shedlock_redis::bench_support;
    /// The `redis` crate, for building a `Client` or an `AsyncConnectionConfig`.
    pub use shedlock_redis::redis as client;
    pub use shedlock_redis::{
        DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisLockProvider,
    };
}

/// The SQL providers (features `postgres`, `mysql`, `sqlite`), on ShedLock's
/// `shedlock` table.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite")))
)]
pub mod sql {
    /// The `sqlx` crate, for building a pool.
    pub use shedlock_sql::sqlx;
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub use shedlock_sql::{DEFAULT_BUSY_TIMEOUT, Sqlite, SqliteLockProvider};
    pub use shedlock_sql::{
        DEFAULT_STATEMENT_TIMEOUT, DEFAULT_TABLE_NAME, MAX_SQL_NAME_LEN, SqlDatabase,
        SqlLockProvider, SqlServer,
    };
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub use shedlock_sql::{MySql, MySqlLockProvider};
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub use shedlock_sql::{Postgres, PostgresLockProvider};
}

/// Locked jobs for tokio-cron-scheduler (feature `cron`): every replica
/// schedules the job, one runs each tick, and stopping the scheduler cancels
/// runs in progress and gives their locks back. See [`cron::LockedJobs`].
#[cfg(feature = "cron")]
#[cfg_attr(docsrs, doc(cfg(feature = "cron")))]
pub mod cron {
    pub use shedlock_cron::{JobOutput, LockedJobs, tokio_cron_scheduler};
}

/// Metrics of lock attempts and locked runs (feature `metrics`), recorded
/// through the [`metrics`](https://docs.rs/metrics) facade: install any
/// exporter (Prometheus, StatsD, ...) and they appear there.
///
/// | metric | kind | labels | what |
/// |---|---|---|---|
/// | `shedlock_attempts_total` | counter | `lock` | calls that tried to take the lock (= acquired + skipped + errors) |
/// | `shedlock_acquired_total` | counter | `lock` | calls that took the lock: the job ran |
/// | `shedlock_skipped_total` | counter | `lock` | calls that found the lock held elsewhere (after waiting, if asked) |
/// | `shedlock_errors_total` | counter | `lock`, `kind` | calls that failed to take the lock, by [`LockError::kind`] |
/// | `shedlock_leases_lost_total` | counter | `lock` | leases that ended under a running job |
/// | `shedlock_extensions_failed_total` | counter | `lock` | extensions (keep-alive, `extend_active_lock`) that did not extend |
/// | `shedlock_execution_seconds` | histogram | `lock` | how long the job ran under the lock |
/// | `shedlock_wait_seconds` | histogram | `lock` | from the start of an attempt to the lock taken |
/// | `shedlock_active_executions` | gauge | `lock` | jobs running under their lock in this process |
/// | `shedlock_last_acquired_timestamp_seconds` | gauge | `lock` | when this process last took the lock (Unix time) |
///
/// `lock` is the lock's name; for `#[scheduler_lock(name = "report-{region}")]`
/// it is the template `report-{region}`, so the number of series stays
/// bounded, unless [`label_rendered_names(true)`](metrics::label_rendered_names)
/// asks for rendered names.
///
/// ```
/// shedlock::metrics::describe(); // units and help texts for the installed recorder
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics {
    pub use shedlock_core::metrics::{
        ACQUIRED, ACTIVE_EXECUTIONS, ATTEMPTS, ERRORS, EXECUTION_SECONDS, EXTENSIONS_FAILED,
        LAST_ACQUIRED, LEASES_LOST, MISSED_TICKS, SKIPPED, WAIT_SECONDS, describe,
        label_rendered_names,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use shedlock_core::private::*;
}

/// The README and the guide's pages, compiled as doctests: every Rust block
/// a reader can copy compiles against this version (`no_run` where it needs
/// a server or runs forever).
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../README.md")]
    mod readme {}
    #[doc = include_str!("../docs/attribute.md")]
    mod attribute {}
    #[doc = include_str!("../docs/command.md")]
    mod command {}
    #[doc = include_str!("../docs/cron.md")]
    mod cron {}
    #[doc = include_str!("../docs/lock-kinds.md")]
    mod lock_kinds {}
    #[doc = include_str!("../docs/observability.md")]
    mod observability {}
    #[doc = include_str!("../docs/scopes-and-leaders.md")]
    mod scopes_and_leaders {}
    #[doc = include_str!("../docs/semantics.md")]
    mod semantics {}
    #[doc = include_str!("../docs/stores.md")]
    mod stores {}
}
