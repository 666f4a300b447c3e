//! `LockConfiguration`: a validated description of one lock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::LockError;

/// The longest lock name accepted, in bytes. Longer names are almost always a
/// templating mistake (a whole payload put into the name), and some stores
/// limit keys further (ShedLock's SQL table: 64 characters).
pub const MAX_NAME_LEN: usize = 1024;

/// The longest `lock_at_most_for` accepted: 100 years, far beyond any job,
/// yet small enough that lease arithmetic on instants never overflows.
pub const MAX_LOCK_AT_MOST_FOR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The largest number of permits one holder may take, and the largest capacity.
pub const MAX_PERMITS: u32 = 1_000_000;

/// Rejects a capacity no lock can have (above [`MAX_PERMITS`]): what a
/// provider's [`LockAdmin::set_capacity`](crate::LockAdmin::set_capacity)
/// checks first.
pub fn validate_capacity(capacity: u32) -> Result<(), LockError> {
    if capacity > MAX_PERMITS {
        return Err(LockError::InvalidConfiguration(format!(
            "the capacity must be at most {MAX_PERMITS}, not {capacity}"
        )));
    }
    Ok(())
}

/// How a holder uses a lock.
///
/// Every lock has a *capacity*, kept in the store and changeable at run time
/// (see [`LockAdmin`](crate::LockAdmin)); capacity 0 means *paused*: nobody
/// acquires the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// The whole lock: acquired only when nobody else holds it, shared or
    /// not, and nobody gets in while it is held. An ordinary lock. Waiting
    /// exclusive holders go first: once one is queued, new shared holders wait.
    #[default]
    Exclusive,
    /// `permits` of the lock's capacity (1 for a plain shared holder): any
    /// number of shared holders run together as long as their permits do
    /// not exceed the capacity.
    Shared {
        /// How many permits this holder takes, at least 1.
        permits: u32,
    },
}

impl LockMode {
    /// The permits a holder in this mode takes; exclusive holders take the whole lock.
    pub fn permits(self) -> Option<u32> {
        match self {
            LockMode::Exclusive => None,
            LockMode::Shared { permits } => Some(permits),
        }
    }
}

/// A validated description of one lock: its name, how long a lease lasts,
/// and how the holder uses the lock ([`LockMode`]).
///
/// Reusable: the lease times are computed when the lock is acquired, not when
/// the configuration is built, so one configuration can serve every run of a job.
/// Cloning is cheap (the name is shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockConfiguration {
    name: Arc<str>,
    lock_at_most_for: Duration,
    lock_at_least_for: Duration,
    mode: LockMode,
    capacity: Option<u32>,
    /// The tick this acquisition claims, in milliseconds since 1970.
    tick: Option<i64>,
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
            mode: LockMode::Exclusive,
            capacity: None,
            tick: None,
        })
    }

    /// An acquisition for one tick of a schedule (the instant the job was
    /// due, not the clock's now): it takes the lock only when no run of this
    /// name has claimed this tick or a later one; otherwise it is a skip
    /// (`Ok(None)`), even if the lock is free. The last claimed tick is kept
    /// beside the lock, written in the same step as the acquisition, and
    /// outlives the lease. So each tick runs at most once across all
    /// replicas, however short the job, without `lock_at_least_for`, and
    /// whatever the replicas' clocks say (each claims the schedule's instant).
    ///
    /// Ticks are kept to the millisecond; ticks before 1970 count as 1970.
    /// A tick is claimed by one exclusive holder: a shared or counted
    /// acquisition with a tick is refused with
    /// [`LockError::InvalidConfiguration`] by every provider.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use shedlock_core::LockConfiguration;
    ///
    /// let due = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    /// let config = LockConfiguration::new("nightly-report", Duration::from_secs(600), Duration::ZERO)?
    ///     .for_tick(due);
    /// assert_eq!(config.tick(), Some(due));
    /// # Ok::<(), shedlock_core::LockError>(())
    /// ```
    pub fn for_tick(self, tick: SystemTime) -> LockConfiguration {
        LockConfiguration {
            tick: Some(tick_millis(tick)),
            ..self
        }
    }

    /// The tick this acquisition claims (see [`for_tick`](Self::for_tick)),
    /// to the millisecond.
    pub fn tick(&self) -> Option<SystemTime> {
        self.tick.map(millis_tick)
    }

    /// The tick this acquisition claims, in milliseconds since 1970: how
    /// stores keep it.
    pub fn tick_millis(&self) -> Option<i64> {
        self.tick
    }

    /// For providers: refuses a tick claimed by a shared or counted holder.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a tick on a shared acquisition.
    pub fn check_tick(&self) -> Result<(), LockError> {
        match (self.tick, self.mode) {
            (Some(_), LockMode::Shared { .. }) => Err(LockError::InvalidConfiguration(format!(
                "lock '{}': a tick is claimed by one exclusive holder; drop the tick or \
                 make the acquisition exclusive",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Makes this a shared holder of one permit (see [`LockMode::Shared`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shedlock_core::{LockConfiguration, LockMode};
    ///
    /// let reader = LockConfiguration::new("catalog", Duration::from_secs(60), Duration::ZERO)?.shared();
    /// assert_eq!(reader.mode(), LockMode::Shared { permits: 1 });
    /// # Ok::<(), shedlock_core::LockError>(())
    /// ```
    pub fn shared(self) -> Self {
        LockConfiguration {
            mode: LockMode::Shared { permits: 1 },
            ..self
        }
    }

    /// Makes this a counted holder taking `permits` of the lock's capacity.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for 0 permits or more than [`MAX_PERMITS`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use shedlock_core::LockConfiguration;
    ///
    /// // Nine permits in all; each export takes three, so three run at once.
    /// let export = LockConfiguration::new("exports", Duration::from_secs(600), Duration::ZERO)?
    ///     .with_permits(3)?
    ///     .with_capacity(9)?;
    /// assert_eq!(export.mode().permits(), Some(3));
    /// # Ok::<(), shedlock_core::LockError>(())
    /// ```
    pub fn with_permits(self, permits: u32) -> Result<Self, LockError> {
        if permits == 0 || permits > MAX_PERMITS {
            return Err(LockError::InvalidConfiguration(format!(
                "lock '{}': permits must be between 1 and {MAX_PERMITS}, not {permits}",
                self.name
            )));
        }
        Ok(LockConfiguration {
            mode: LockMode::Shared { permits },
            ..self
        })
    }

    /// Sets how the holder uses the lock.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a shared mode with 0 permits or
    /// more than [`MAX_PERMITS`].
    pub fn with_mode(self, mode: LockMode) -> Result<Self, LockError> {
        match mode {
            LockMode::Exclusive => Ok(LockConfiguration {
                mode: LockMode::Exclusive,
                ..self
            }),
            LockMode::Shared { permits } => self.with_permits(permits),
        }
    }

    /// The capacity to use while the store holds none for this lock (an
    /// operator's capacity, set at run time, wins). Without one, the capacity
    /// is 1 for exclusive holders and unlimited for shared ones. 0 means paused.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] above [`MAX_PERMITS`].
    pub fn with_capacity(self, capacity: u32) -> Result<Self, LockError> {
        if capacity > MAX_PERMITS {
            return Err(LockError::InvalidConfiguration(format!(
                "lock '{}': the capacity must be at most {MAX_PERMITS}, not {capacity}",
                self.name
            )));
        }
        Ok(LockConfiguration {
            capacity: Some(capacity),
            ..self
        })
    }

    /// How the holder uses the lock: exclusive (the default) or shared.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The capacity used while the store holds none, if one was set.
    pub fn capacity(&self) -> Option<u32> {
        self.capacity
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
            .field("mode", &self.mode)
            .field("capacity", &self.capacity)
            .field("tick", &self.tick())
            .finish()
    }
}

/// `tick` in whole milliseconds since 1970 (earlier instants: 0), as stores
/// keep ticks.
pub(crate) fn tick_millis(tick: SystemTime) -> i64 {
    tick.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The instant of a tick kept as milliseconds since 1970.
pub(crate) fn millis_tick(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
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
    fn counted_and_shared_modes_are_validated() -> Result<(), LockError> {
        let config = LockConfiguration::new("job", SEC, Duration::ZERO)?;
        assert_eq!(config.mode(), LockMode::Exclusive);
        assert_eq!(config.capacity(), None);
        let err = config.clone().with_permits(0).unwrap_err();
        assert!(
            err.to_string().contains("permits must be between 1"),
            "{err}"
        );
        assert!(config.clone().with_permits(MAX_PERMITS + 1).is_err());
        assert!(config.clone().with_capacity(MAX_PERMITS + 1).is_err());
        let counted = config.clone().with_permits(3)?.with_capacity(9)?;
        assert_eq!(counted.mode(), LockMode::Shared { permits: 3 });
        assert_eq!(counted.capacity(), Some(9));
        assert_eq!(
            counted.with_mode(LockMode::Exclusive)?.mode(),
            LockMode::Exclusive
        );
        assert_eq!(config.shared().mode().permits(), Some(1));
        Ok(())
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
