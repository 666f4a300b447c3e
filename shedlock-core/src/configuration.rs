//! `LockConfiguration`: a validated description of one lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::LockError;

/// The longest lock name accepted, in bytes. Longer names are almost always a
/// templating mistake (a whole payload put into the name), and some stores
/// limit keys further (ShedLock's SQL table: 64 characters).
pub const MAX_NAME_LEN: usize = 1024;

/// The longest `lock_at_most_for` accepted: 100 years, far beyond any job,
/// yet small enough that lease arithmetic on instants never overflows.
pub const MAX_LOCK_AT_MOST_FOR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A validated description of one lock: its name and how long a lease lasts.
///
/// Reusable: the lease times are computed when the lock is acquired, not when
/// the configuration is built, so one configuration can serve every run of a job.
/// Cloning is cheap (the name is shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockConfiguration {
    name: Arc<str>,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
}

impl LockConfiguration {
    /// Describes the lock `name`, whose lease ends at most `lock_at_most_for`
    /// after acquisition (even if the holder dies) and at least
    /// `lock_at_least_for` after it (even if the job ends sooner).
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for an empty (or blank) name, a name
    /// longer than [`MAX_NAME_LEN`] bytes, a zero `lock_at_most_for`, or a
    /// `lock_at_least_for` longer than `lock_at_most_for`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shedlock_core::LockConfiguration;
    ///
    /// let config = LockConfiguration::new("nightly-report", Duration::from_secs(600), Duration::from_secs(30))?;
    /// assert_eq!(config.name(), "nightly-report");
    /// assert!(LockConfiguration::new("", Duration::from_secs(1), Duration::ZERO).is_err());
    /// # Ok::<(), shedlock_core::LockError>(())
    /// ```
    pub fn new(
        name: impl Into<Arc<str>>,
        lock_at_most_for: Duration,
        lock_at_least_for: Duration,
    ) -> Result<Self, LockError> {
        let name = name.into();
        validate_name(&name)?;
        validate_durations(&name, lock_at_most_for, lock_at_least_for)?;
        Ok(LockConfiguration {
            name,
            lock_at_most_for,
            lock_at_least_for,
        })
    }

    /// The lock's name, unique per job (or per job and resource).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string, for guards that outlive the configuration.
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// How long a lease lasts at most, measured from acquisition.
    pub fn lock_at_most_for(&self) -> Duration {
        self.lock_at_most_for
    }

    /// How long a lease lasts at least, measured from acquisition.
    pub fn lock_at_least_for(&self) -> Duration {
        self.lock_at_least_for
    }
}

impl AsRef<LockConfiguration> for LockConfiguration {
    fn as_ref(&self) -> &LockConfiguration {
        self
    }
}

impl fmt::Debug for LockConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockConfiguration")
            .field("name", &&*self.name)
            .field("lock_at_most_for", &self.lock_at_most_for)
            .field("lock_at_least_for", &self.lock_at_least_for)
            .finish()
    }
}

fn validate_name(name: &str) -> Result<(), LockError> {
    if name.trim().is_empty() {
        return Err(LockError::InvalidConfiguration(
            "the lock name is empty; give every job a unique, non-blank name".into(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LockError::InvalidConfiguration(format!(
            "the lock name is {} bytes long, more than the {MAX_NAME_LEN} allowed; \
             put an identifier of the resource into the name, not its contents",
            name.len()
        )));
    }
    Ok(())
}

/// Checks a pair of lease durations (also used by `LockGuard::extend`).
pub(crate) fn validate_durations(
    name: &str,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
) -> Result<(), LockError> {
    if lock_at_most_for.is_zero() {
        return Err(LockError::InvalidConfiguration(format!(
            "lock '{name}': lock_at_most_for is zero; set it longer than the job normally runs"
        )));
    }
    if lock_at_most_for > MAX_LOCK_AT_MOST_FOR {
        return Err(LockError::InvalidConfiguration(format!(
            "lock '{name}': lock_at_most_for is longer than 100 years; a lease must end"
        )));
    }
    if lock_at_least_for > lock_at_most_for {
        return Err(LockError::InvalidConfiguration(format!(
            "lock '{name}': lock_at_least_for ({}) is longer than lock_at_most_for ({}); \
             lower lock_at_least_for or raise lock_at_most_for",
            humantime::format_duration(lock_at_least_for),
            humantime::format_duration(lock_at_most_for)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn accepts_a_valid_configuration_and_keeps_its_values() -> Result<(), LockError> {
        let config = LockConfiguration::new("job", 10 * SEC, 2 * SEC)?;
        assert_eq!(config.name(), "job");
        assert_eq!(config.lock_at_most_for(), 10 * SEC);
        assert_eq!(config.lock_at_least_for(), 2 * SEC);
        assert_eq!(config.clone(), config);
        Ok(())
    }

    #[test]
    fn rejects_empty_and_blank_names() {
        for name in ["", "   ", "\t\n"] {
            let err = LockConfiguration::new(name, SEC, Duration::ZERO).unwrap_err();
            assert!(err.to_string().contains("empty"), "{err}");
        }
    }

    #[test]
    fn rejects_names_longer_than_the_limit() {
        let err =
            LockConfiguration::new("x".repeat(MAX_NAME_LEN + 1), SEC, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("bytes long"), "{err}");
        assert!(LockConfiguration::new("x".repeat(MAX_NAME_LEN), SEC, Duration::ZERO).is_ok());
    }

    #[test]
    fn rejects_zero_lock_at_most_for() {
        let err = LockConfiguration::new("job", Duration::ZERO, Duration::ZERO).unwrap_err();
        assert!(
            err.to_string().contains("lock_at_most_for is zero"),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_lock_at_most_for_so_long_that_the_lease_never_ends() {
        let err = LockConfiguration::new("job", Duration::MAX, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("100 years"), "{err}");
        assert!(LockConfiguration::new("job", MAX_LOCK_AT_MOST_FOR, Duration::ZERO).is_ok());
    }

    #[test]
    fn rejects_lock_at_least_for_longer_than_lock_at_most_for() {
        let err = LockConfiguration::new("job", SEC, 2 * SEC).unwrap_err();
        assert!(
            err.to_string().contains("longer than lock_at_most_for"),
            "{err}"
        );
        assert!(LockConfiguration::new("job", SEC, SEC).is_ok());
    }
}
