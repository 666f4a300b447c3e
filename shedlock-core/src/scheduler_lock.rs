//! `SchedulerLock`: the process-wide default provider that `#[scheduler_lock]` uses.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::configuration::validate_durations;
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
}

impl SchedulerLock {
    /// Starts describing the default, with the provider every
    /// `#[scheduler_lock]` without its own `provider` will use.
    pub fn builder(provider: impl LockProvider) -> SchedulerLockBuilder {
        SchedulerLockBuilder {
            provider: Arc::new(provider),
            default_lock_at_most_for: None,
            default_lock_at_least_for: Duration::ZERO,
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

    /// Makes this the process-wide default.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] when `default_lock_at_most_for` is
    /// missing or zero or shorter than the default `lock_at_least_for`;
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
        INSTALLED
            .set(SchedulerLock {
                provider: self.provider,
                default_lock_at_most_for,
                default_lock_at_least_for: self.default_lock_at_least_for,
            })
            .map_err(|_| LockError::AlreadyInstalled)
    }
}
