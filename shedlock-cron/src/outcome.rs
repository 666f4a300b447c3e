//! What became of a tick, logged: a tick's run has no caller to return it to.

use std::fmt::Display;

use shedlock_core::{LockError, RunOutcome};

/// What a locked cron job returns: `()`, or a `Result` whose error is logged
/// at `warn` (a tick's output has no caller to go to).
///
/// An error is logged in its alternate form (`{:#}`), which for `anyhow`
/// errors includes their causes.
pub trait JobOutput {
    /// The job's error, if it failed.
    fn failure(&self) -> Option<&dyn Display>;
}

impl JobOutput for () {
    fn failure(&self) -> Option<&dyn Display> {
        None
    }
}

impl<T, E: Display> JobOutput for Result<T, E> {
    fn failure(&self) -> Option<&dyn Display> {
        self.as_ref().err().map(|err| err as &dyn Display)
    }
}

/// The outcome a run's history records for `output`: `None` when the run
/// was cancelled (the jobs were stopped), an error when the job failed.
pub(crate) fn run_outcome(output: Option<&impl JobOutput>) -> RunOutcome {
    match output {
        None => RunOutcome::Cancelled,
        Some(output) if output.failure().is_some() => RunOutcome::Error,
        Some(_) => RunOutcome::Ok,
    }
}

/// What became of one tick on this replica.
pub(crate) enum Outcome<T> {
    /// The lock was taken and the job ran to its end.
    Ran(T),
    /// The lock is held elsewhere: another replica runs this tick.
    Skipped,
    /// The jobs were stopped while this run was in progress; it was cancelled.
    Stopped,
    /// The tick came after the jobs were stopped, and did not start.
    AfterStop,
    /// The lock could not be taken (the store failed, no provider...); the job did not run.
    Failed(LockError),
}

impl<T: JobOutput> Outcome<T> {
    /// Logs the outcome: skips at `debug`, failures at `warn`.
    pub(crate) fn log(&self, lock: Option<&str>, schedule: &str) {
        match self {
            Outcome::Ran(output) => match output.failure() {
                Some(failure) => tracing::warn!(
                    lock,
                    schedule,
                    error = format_args!("{failure:#}"),
                    "cron job failed"
                ),
                None => tracing::debug!(lock, schedule, "cron job ran"),
            },
            Outcome::Skipped => {
                tracing::debug!(
                    lock,
                    schedule,
                    "cron tick skipped: the lock is held elsewhere"
                );
            }
            Outcome::Stopped => tracing::info!(
                lock,
                schedule,
                "cron job cancelled: its jobs were stopped; the lock is given back"
            ),
            Outcome::AfterStop => {
                tracing::debug!(lock, schedule, "cron tick not run: its jobs were stopped");
            }
            Outcome::Failed(err) => tracing::warn!(
                lock,
                schedule,
                error = %err,
                "cron tick did not run: the lock could not be taken"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};

    use shedlock_core::StoreFailure;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;

    /// One event: its level and its fields, the message among them.
    type Seen = (Level, Vec<(String, String)>);

    /// A subscriber that keeps every event.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Seen>>>);

    struct Collect<'a>(&'a mut Vec<(String, String)>);

    impl Visit for Collect<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Collect(&mut fields));
            if let Ok(mut seen) = self.0.lock() {
                seen.push((*event.metadata().level(), fields));
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// The one event `outcome` logs, for lock "report" on "*/1 * * * * *".
    fn logged<T: JobOutput>(outcome: Outcome<T>) -> Seen {
        let recorder = Recorder::default();
        tracing::subscriber::with_default(recorder.clone(), || {
            outcome.log(Some("report"), "*/1 * * * * *");
        });
        let mut seen = recorder
            .0
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default();
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen.remove(0)
    }

    fn field<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
        seen.1
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn a_skipped_tick_is_logged_at_debug_with_its_lock_and_schedule() {
        let seen = logged(Outcome::<()>::Skipped);
        assert_eq!(seen.0, Level::DEBUG);
        assert_eq!(field(&seen, "lock"), Some("\"report\""), "{seen:?}");
        assert_eq!(
            field(&seen, "schedule"),
            Some("\"*/1 * * * * *\""),
            "{seen:?}"
        );
    }

    #[test]
    fn a_store_error_is_logged_at_warn_with_its_lock() {
        let err = LockError::from(StoreFailure {
            store: "redis",
            action: "acquiring lock 'report'".into(),
            what_happened: "Redis did not answer".into(),
            consequence: "the lock was not taken".into(),
        });
        let seen = logged(Outcome::<()>::Failed(err));
        assert_eq!(seen.0, Level::WARN);
        assert_eq!(field(&seen, "lock"), Some("\"report\""), "{seen:?}");
        assert!(
            field(&seen, "error").is_some_and(|error| error.contains("Redis did not answer")),
            "{seen:?}"
        );
    }

    #[test]
    fn a_jobs_own_error_is_logged_at_warn_and_success_at_debug() {
        let failed = logged(Outcome::Ran(Err::<(), _>("disk full")));
        assert_eq!(failed.0, Level::WARN);
        assert_eq!(field(&failed, "error"), Some("disk full"), "{failed:?}");
        assert_eq!(logged(Outcome::Ran(Ok::<_, String>(3))).0, Level::DEBUG);
        assert_eq!(logged(Outcome::Ran(())).0, Level::DEBUG);
    }
}
