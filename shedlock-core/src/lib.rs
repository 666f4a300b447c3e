//! The runtime of [shedlock](https://docs.rs/shedlock): lock configuration, the
//! [`LockProvider`] trait, [`LockGuard`], [`LockingTaskExecutor`], the
//! process-wide [`SchedulerLock`] default, the task-local current lock, and
//! the [`InMemoryLockProvider`].
//!
//! Applications use these through the `shedlock` facade, and so do
//! third-party providers: `shedlock::provider` (with `shedlock::admin`) holds
//! everything a provider needs, so a provider crate depends on `shedlock`
//! alone. Within this workspace, the crates the facade is built from (Redis,
//! SQL, cron), the `shedlock` command and the test-support crate depend on
//! this one directly.

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod background_release;
mod configuration;
mod context;
mod error;
mod executor;
mod guard;
pub mod identity;
mod leader;
mod lease_keeping;
mod memory;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod provider;
mod release_notifiers;
mod release_tracking;
mod runs;
mod scheduler_lock;
mod scopes;
mod ticks;

#[doc(hidden)]
pub mod private;

pub use admin::{LockAdmin, LockHolder, LockState};
pub use background_release::BackgroundRelease;
pub use configuration::{
    LockConfiguration, LockMode, MAX_LOCK_AT_MOST_FOR, MAX_NAME_LEN, MAX_PERMITS, validate_capacity,
};
pub use context::{assert_locked, current_lock, extend_active_lock, is_lease_lost, lease_lost};
pub use error::{BoxError, LockError, StoreCause, StoreFailure};
pub use executor::{ExecutionOptions, LockingTaskExecutor, WhenHeld};
pub use guard::{GrantedLease, LockGuard, LockInfo};
pub use leader::{Leader, LeaderElection, Leadership};
pub use memory::InMemoryLockProvider;
pub use provider::{BoxFuture, Lease, LockProvider, ReleaseNotifier, ReleaseWatch, Waiter};
pub use release_notifiers::ReleaseNotifiers;
pub use release_tracking::track_releases;
pub use runs::{FinishedRun, MissedTicks, RUN_HISTORY_LEN, RunOutcome, RunRecord};
pub use scheduler_lock::{SchedulerLock, SchedulerLockBuilder};
pub use scopes::{OwnedScope, SCOPE_LOCK_PREFIX};
pub use ticks::{MissedBetween, missed_every, run_for_tick};
