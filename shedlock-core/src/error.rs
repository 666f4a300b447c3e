//! `LockError`: the one error type of shedlock.

use std::error::Error as StdError;

use crate::LockMode;

/// A boxed error from a store's client library, kept as the `source` of a [`LockError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong when taking, keeping or releasing a lock.
///
/// Messages say what happened and what to do about it. None of them contains
/// credentials: providers redact connection URLs before they reach an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// A lock configuration was rejected (empty name, zero `lock_at_most_for`, ...).
    #[error("invalid lock configuration: {0}")]
    InvalidConfiguration(String),

    /// A `#[scheduler_lock]` function ran before any provider was installed.
    #[error(
        "no lock provider is installed: call `shedlock::SchedulerLock::builder(provider)\
         .default_lock_at_most_for(..).install()` once at startup, or give the attribute \
         a provider with `#[scheduler_lock(provider = ...)]`"
    )]
    NotConfigured,

    /// `SchedulerLock::install` was called a second time.
    #[error(
        "a default lock provider is already installed; `SchedulerLock::install` may be called \
         only once per process"
    )]
    AlreadyInstalled,

    /// The store could not be reached or refused a command.
    #[error("lock store error ({store}) while {action}: {message}")]
    Store {
        /// Which store: "redis", "memory", ...
        store: &'static str,
        /// What shedlock was doing, e.g. "acquiring lock 'nightly-report'".
        action: String,
        /// What went wrong and, where it helps, what to check.
        message: String,
        /// The client library's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The reply to an acquisition was lost (a timeout after the command was
    /// sent), so the lock may have been taken for this caller without it knowing.
    #[error(
        "the reply to acquiring lock '{name}' was lost ({reason}); {}",
        if *.released {
            "the lease it may have taken was released, so the job did not run; it is safe to retry"
        } else {
            "the lease it may have taken could not be released yet and will end within \
             lock_at_most_for at the latest; a background task keeps trying to release it"
        }
    )]
    AcquisitionUncertain {
        /// The lock's name.
        name: String,
        /// Why the reply was lost.
        reason: String,
        /// Whether the possibly taken lease is known to be released now.
        released: bool,
    },

    /// The provider cannot do what was asked (e.g. shared or counted locks on
    /// a store whose format has no room for them).
    #[error("the {store} lock provider does not support {what}; {advice}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// What was asked.
        what: &'static str,
        /// What to do instead.
        advice: &'static str,
    },

    /// An operation needed the current task to hold a lock, and it holds none.
    #[error(
        "this task holds no lock: call it from inside a #[scheduler_lock] function or a \
         LockingTaskExecutor::execute future"
    )]
    NotLocked,

    /// The lease of a lock ended while the job still believed it held it.
    #[error(
        "the lease of lock '{name}' ended before the job finished (it expired or another \
         holder took it); raise lock_at_most_for or use keep_alive"
    )]
    LeaseLost {
        /// The lock's name.
        name: String,
    },

    /// A task holding a lock called a function locked on the same name that
    /// asks for more than the task holds (exclusive while it holds it shared,
    /// or more permits than it holds). Taking more would wait on the task's
    /// own hold, so the nested call did not run.
    #[error(
        "this task holds lock '{name}' {} and called a function that locks it {}; a nested \
         call cannot take more of a lock than its own task holds (it would wait on itself), \
         so it did not run: lock the outer call {}, or make the call outside it",
        mode_in_words(*.held), mode_in_words(*.asked), mode_in_words(*.asked)
    )]
    ReentrantUpgrade {
        /// The lock's name.
        name: String,
        /// How the task holds the lock.
        held: LockMode,
        /// How the nested call asked for it.
        asked: LockMode,
    },
}

/// A lock mode as the messages of [`LockError`] put it.
fn mode_in_words(mode: LockMode) -> String {
    match mode {
        LockMode::Exclusive => "exclusively".to_owned(),
        LockMode::Shared { permits: 1 } => "shared with 1 permit".to_owned(),
        LockMode::Shared { permits } => format!("shared with {permits} permits"),
    }
}

impl LockError {
    /// A store error with the client error as its source.
    pub fn store(
        store: &'static str,
        action: impl Into<String>,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        LockError::Store {
            store,
            action: action.into(),
            message: message.into(),
            source,
        }
    }

    /// True for failures of the store (as opposed to misuse or configuration).
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            LockError::Store { .. } | LockError::AcquisitionUncertain { .. }
        )
    }
}
