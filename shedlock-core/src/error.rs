//! `LockError`: the one error type of shedlock.

use std::error::Error as StdError;
use std::fmt;

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

    /// The store could not be reached or refused a command. Made from a
    /// [`StoreFailure`]; the client library's error is the `source` only, so
    /// `{:#}` and error-chain reports print each cause once.
    #[error("lock store error ({store}) while {action}: {what_happened}; {consequence}")]
    Store {
        /// Which store: "redis", "postgres", ...
        store: &'static str,
        /// What shedlock was doing, e.g. "acquiring lock 'nightly-report'".
        action: String,
        /// What went wrong, named by its kind, and where it helps what to check.
        what_happened: String,
        /// What the failure left behind, or what to do about it.
        consequence: String,
        /// The client library's error.
        #[source]
        source: Option<StoreCause>,
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

    /// The provider cannot do what was asked (e.g. a provider of your own
    /// without shared locks, or run history from a store that keeps none).
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

/// The named parts of a [`LockError::Store`]: what shedlock was doing, what
/// went wrong, and what that left behind.
///
/// `what_happened` names the failure by its kind (a timeout, a refused
/// connection, an error code) and never repeats the client's own message:
/// that goes in as the cause, with [`caused_by`](Self::caused_by), and is the
/// error's `source()` only. A failure without an underlying error becomes a
/// `LockError` with `From`.
///
/// ```
/// use std::error::Error as _;
/// use shedlock_core::{LockError, StoreFailure};
///
/// let cause = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
/// let err = StoreFailure {
///     store: "redis",
///     action: "acquiring lock 'report'".into(),
///     what_happened: "Redis at 10.0.0.5:6379 did not answer within the response timeout".into(),
///     consequence: "the lock was not taken".into(),
/// }
/// .caused_by(cause);
/// assert_eq!(
///     err.to_string(),
///     "lock store error (redis) while acquiring lock 'report': Redis at 10.0.0.5:6379 did \
///      not answer within the response timeout; the lock was not taken"
/// );
/// assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("read timed out"));
/// ```
#[derive(Clone, Debug)]
pub struct StoreFailure {
    /// Which store: "redis", "postgres", ...
    pub store: &'static str,
    /// What shedlock was doing, e.g. "acquiring lock 'nightly-report'".
    pub action: String,
    /// What went wrong, named by its kind (not the cause's own words), and
    /// where it helps what to check.
    pub what_happened: String,
    /// What the failure left behind ("the lock was not taken"), or what to do.
    pub consequence: String,
}

impl StoreFailure {
    /// The error, with `cause` (the client library's error) as its `source()`.
    pub fn caused_by(self, cause: impl Into<BoxError>) -> LockError {
        self.into_error(Some(StoreCause::new(cause.into())))
    }

    fn into_error(self, source: Option<StoreCause>) -> LockError {
        let StoreFailure {
            store,
            action,
            what_happened,
            consequence,
        } = self;
        LockError::Store {
            store,
            action,
            what_happened,
            consequence,
            source,
        }
    }
}

/// A store failure with no underlying error (the store answered something
/// unexpected, or a limit of shedlock's own ran out).
impl From<StoreFailure> for LockError {
    fn from(failure: StoreFailure) -> Self {
        failure.into_error(None)
    }
}

/// The client library's error behind a [`LockError::Store`], its `source()`.
///
/// Shown so that an error chain prints each cause once. Client libraries do
/// not all keep thiserror's rule: redis-rs shows an I/O or server error as
/// that error's own text and also returns it as its source, sqlx writes
/// "error returned from database: {cause}" and returns the cause too. So a
/// layer that says what the layer below says is passed over, and a layer
/// that ends with it is shown without that ending.
pub struct StoreCause(Box<Shown>);

/// A client error and how to show it (boxed: a [`LockError`] stays small).
struct Shown {
    error: BoxError,
    /// The error's own text, without what its source says.
    text: String,
    /// How many layers below the error repeat its text.
    repeated: usize,
}

impl StoreCause {
    fn new(error: BoxError) -> Self {
        let mut text = error.to_string();
        let mut repeated = 0;
        let mut below = error.source();
        while let Some(layer) = below {
            let said = layer.to_string();
            if said == text {
                repeated += 1;
                below = layer.source();
                continue;
            }
            if let Some(own) = text
                .strip_suffix(said.as_str())
                .filter(|_| !said.is_empty())
            {
                let own = own.trim_end_matches([':', ' ', '-']);
                if !own.is_empty() {
                    text = own.to_owned();
                }
            }
            break;
        }
        StoreCause(Box::new(Shown {
            error,
            text,
            repeated,
        }))
    }

    /// The client library's error as it was given, to downcast it (to a
    /// `redis::RedisError`, an `sqlx::Error`, ...).
    pub fn client_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0.error
    }
}

impl fmt::Display for StoreCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for StoreCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.error, f)
    }
}

impl StdError for StoreCause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let mut below = self.0.error.source();
        for _ in 0..self.0.repeated {
            below = below?.source();
        }
        below
    }
}

impl LockError {
    /// True for failures of the store (as opposed to misuse or configuration).
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            LockError::Store { .. } | LockError::AcquisitionUncertain { .. }
        )
    }

    /// A short, stable name of the error's kind, in snake case: the `kind`
    /// label of the `shedlock_errors_total` metric, and something to match
    /// on in logs. It never changes for a variant; new variants get new names.
    ///
    /// ```
    /// use shedlock_core::LockError;
    ///
    /// assert_eq!(LockError::NotConfigured.kind(), "not_configured");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            LockError::InvalidConfiguration(_) => "invalid_configuration",
            LockError::NotConfigured => "not_configured",
            LockError::AlreadyInstalled => "already_installed",
            LockError::Store { .. } => "store",
            LockError::AcquisitionUncertain { .. } => "acquisition_uncertain",
            LockError::Unsupported { .. } => "unsupported",
            LockError::NotLocked => "not_locked",
            LockError::LeaseLost { .. } => "lease_lost",
            LockError::ReentrantUpgrade { .. } => "reentrant_upgrade",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    fn failure() -> StoreFailure {
        StoreFailure {
            store: "redis",
            action: "acquiring lock 'report'".into(),
            what_happened: "the connection to Redis at host:1 was closed".into(),
            consequence: "the lock was not taken".into(),
        }
    }

    /// What `{:#}` of anyhow and error reporters print: every layer's message, joined.
    fn chain(err: &LockError) -> String {
        let layers: Vec<String> = std::iter::successors(Some(err as &dyn Error), |e| (*e).source())
            .map(ToString::to_string)
            .collect();
        layers.join(": ")
    }

    fn reset() -> std::io::Error {
        std::io::Error::other("connection reset by peer")
    }

    /// A client error that keeps thiserror's rule.
    #[derive(Debug, thiserror::Error)]
    #[error("the reply could not be read")]
    struct ReplyLost(#[source] std::io::Error);

    /// Like redis-rs: shows the I/O error as its own text and returns it as the source.
    #[derive(Debug)]
    struct ShowsItsSource(std::io::Error);

    impl fmt::Display for ShowsItsSource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }

    impl Error for ShowsItsSource {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Like sqlx: its message ends with its source's.
    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with database: {0}")]
    struct EndsWithItsSource(#[source] std::io::Error);

    #[test]
    fn a_store_error_chain_prints_each_cause_once() {
        let expected = "lock store error (redis) while acquiring lock 'report': the connection to \
                        Redis at host:1 was closed; the lock was not taken";
        let cases = [
            (
                failure().caused_by(ReplyLost(reset())),
                format!("{expected}: the reply could not be read: connection reset by peer"),
            ),
            (
                failure().caused_by(ShowsItsSource(reset())),
                format!("{expected}: connection reset by peer"),
            ),
            (
                failure().caused_by(EndsWithItsSource(reset())),
                format!("{expected}: error communicating with database: connection reset by peer"),
            ),
            (
                failure().caused_by(reset()),
                format!("{expected}: connection reset by peer"),
            ),
        ];
        for (err, printed) in cases {
            assert_eq!(chain(&err), printed);
        }
    }

    #[test]
    fn the_client_error_stays_reachable_for_downcasting() {
        let err = failure().caused_by(ShowsItsSource(reset()));
        let LockError::Store {
            source: Some(cause),
            ..
        } = &err
        else {
            panic!("not a store error with a cause: {err:?}"); // allow-panic: unit test
        };
        assert!(
            cause
                .client_error()
                .downcast_ref::<ShowsItsSource>()
                .is_some()
        );
        assert!(format!("{err:?}").contains("ShowsItsSource"), "{err:?}");
    }

    #[test]
    fn a_store_failure_without_a_cause_has_no_source() {
        let err = LockError::from(failure());
        assert!(err.source().is_none());
        assert!(err.is_store_failure());
    }
}
