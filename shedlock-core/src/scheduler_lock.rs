//! `SchedulerLock`: the process-wide default provider that `#[scheduler_lock]` uses.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::configuration::validate_durations;
use crate::scopes::{self, OwnedScope, ScopeSettings};
use crate::{LockError, LockProvider};

static INSTALLED: OnceLock<SchedulerLock> = OnceLock::new();

/// The process-wide default lock provider and lease times, like ShedLock's
/// `@EnableSchedulerLock`. Installed once at startup:
///
/// ```
/// use std::time::Duration;
/// use shedlock_core::{InMemoryLockProvider, SchedulerLock};
///
/// SchedulerLock::builder(InMemoryLockProvider::new())
///     .default_lock_at_most_for(Duration::from_secs(10 * 60))
///     .install()?;
/// # Ok::<(), shedlock_core::LockError>(())
/// ```
pub struct SchedulerLock {
    provider: Arc<dyn LockProvider>,
    default_lock_at_most_for: Duration,
    default_lock_at_least_for: Duration,
    scopes: ScopeSettings,
}

impl SchedulerLock {
    /// Starts describing the default, with the provider every
    /// `#[scheduler_lock]` without its own `provider` will use.
    pub fn builder(provider: impl LockProvider) -> SchedulerLockBuilder {
        SchedulerLockBuilder {
            provider: Arc::new(provider),
            default_lock_at_most_for: None,
            default_lock_at_least_for: Duration::ZERO,
            scopes: ScopeSettings::DEFAULT,
        }
    }

    /// The installed default, if [`SchedulerLockBuilder::install`] was called.
    pub fn installed() -> Option<&'static SchedulerLock> {
        INSTALLED.get()
    }

    /// The default provider.
    pub fn provider(&self) -> &Arc<dyn LockProvider> {
        &self.provider
    }

    /// `lock_at_most_for` of locks that do not set their own.
    pub fn default_lock_at_most_for(&self) -> Duration {
        self.default_lock_at_most_for
    }

    /// `lock_at_least_for` of locks that do not set their own.
    pub fn default_lock_at_least_for(&self) -> Duration {
        self.default_lock_at_least_for
    }

    /// Timing of job scopes: the installed one, or the defaults.
    pub(crate) fn scope_settings() -> ScopeSettings {
        Self::installed().map_or(ScopeSettings::DEFAULT, |installed| installed.scopes)
    }

    /// Gives up every job scope this process owns (`#[scheduler_lock(scope =
    /// "..")]`), on every provider, so other replicas take them over at their
    /// next tick instead of after the lease: call it when the service shuts
    /// down gracefully, after stopping its scheduler. Runs of scoped jobs in
    /// progress finish first; from the call on, scoped jobs of this process
    /// skip. Locks of unscoped jobs are not affected (each run releases its own).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // ... scheduler.shutdown().await ...
    /// shedlock_core::SchedulerLock::shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown() {
        scopes::shutdown().await;
    }

    /// The job scopes this process owns now, with their terms (the scope
    /// leases' fencing tokens), sorted by scope.
    pub fn owned_scopes() -> Vec<OwnedScope> {
        scopes::owned_scopes()
    }
}

impl fmt::Debug for SchedulerLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerLock")
            .field("default_lock_at_most_for", &self.default_lock_at_most_for)
            .field("default_lock_at_least_for", &self.default_lock_at_least_for)
            .finish_non_exhaustive()
    }
}

/// Describes the process-wide default; see [`SchedulerLock`].
#[must_use = "nothing is installed until `install` is called"]
pub struct SchedulerLockBuilder {
    provider: Arc<dyn LockProvider>,
    default_lock_at_most_for: Option<Duration>,
    default_lock_at_least_for: Duration,
    scopes: ScopeSettings,
}

impl SchedulerLockBuilder {
    /// `lock_at_most_for` of locks that do not set their own (required, as in
    /// ShedLock: a lease must always end). Set it longer than your longest job.
    pub fn default_lock_at_most_for(mut self, lock_at_most_for: Duration) -> Self {
        self.default_lock_at_most_for = Some(lock_at_most_for);
        self
    }

    /// `lock_at_least_for` of locks that do not set their own. Zero when not set.
    pub fn default_lock_at_least_for(mut self, lock_at_least_for: Duration) -> Self {
        self.default_lock_at_least_for = lock_at_least_for;
        self
    }

    /// How long a job scope's lease lasts from each renewal (default 30 s):
    /// after a crash, the time before another replica can take the scope
    /// over. The owner renews it every 2/15 of it and stops running the
    /// scope's jobs when renewals have failed for 2/3 of it.
    pub fn scope_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.scopes.lease_duration = lease_duration;
        self
    }

    /// How often a replica may claim a scope nobody owns (default 5 s), and
    /// how long it trusts "owned by another replica" before asking the store
    /// again. Replicas that start together spread their scopes one per
    /// interval each; a dead owner's scopes move within lease duration + this.
    pub fn scope_sweep_interval(mut self, sweep_interval: Duration) -> Self {
        self.scopes.sweep_interval = sweep_interval;
        self
    }

    /// Makes this the process-wide default.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] when `default_lock_at_most_for` is
    /// missing or zero or shorter than the default `lock_at_least_for`, or
    /// the scope lease is under 100 ms or the sweep interval zero;
    /// [`LockError::AlreadyInstalled`] on a second call.
    pub fn install(self) -> Result<(), LockError> {
        let default_lock_at_most_for = self.default_lock_at_most_for.ok_or_else(|| {
            LockError::InvalidConfiguration(
                "SchedulerLock needs default_lock_at_most_for(..): a lease must always end; \
                 set it longer than your longest job"
                    .into(),
            )
        })?;
        validate_durations(
            "<default>",
            default_lock_at_most_for,
            self.default_lock_at_least_for,
        )?;
        self.scopes.validate()?;
        INSTALLED
            .set(SchedulerLock {
                provider: self.provider,
                default_lock_at_most_for,
                default_lock_at_least_for: self.default_lock_at_least_for,
                scopes: self.scopes,
            })
            .map_err(|_| LockError::AlreadyInstalled)
    }
}
