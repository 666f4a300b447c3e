//! Metrics of lock attempts and locked runs on the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): any exporter the application installs sees them.
//!
//! | metric | kind | labels | counts |
//! |---|---|---|---|
//! | `shedlock_attempts_total` | counter | `lock` | calls that tried to take the lock (= acquired + skipped + errors) |
//! | `shedlock_acquired_total` | counter | `lock` | calls that took the lock: the job ran |
//! | `shedlock_skipped_total` | counter | `lock` | calls that found the lock held elsewhere (after waiting, if asked) |
//! | `shedlock_errors_total` | counter | `lock`, `kind` | calls that failed to take the lock ([`LockError::kind`](crate::LockError::kind)) |
//! | `shedlock_leases_lost_total` | counter | `lock` | leases that ended under a running job |
//! | `shedlock_extensions_failed_total` | counter | `lock` | extensions (keep-alive or `extend_active_lock`) that did not extend |
//! | `shedlock_execution_seconds` | histogram | `lock` | how long the job ran under the lock |
//! | `shedlock_wait_seconds` | histogram | `lock` | from the attempt's start to the lock taken |
//! | `shedlock_active_executions` | gauge | `lock` | jobs running under the lock now, in this process |
//! | `shedlock_last_acquired_timestamp_seconds` | gauge | `lock` | when this process last took the lock (Unix time) |
//!
//! The `lock` label is the lock's name; for an attribute with placeholders
//! (`name = "report-{region}"`) it is the template, so the number of series
//! stays bounded, unless [`label_rendered_names`] asks for rendered names.
//! A nested call that runs on its task's own hold (reentrancy) takes no lock
//! and is not counted; one that is refused counts as an attempt and an error,
//! as does an attribute call with no provider (`kind` `not_configured`) or
//! an invalid configuration. A lease is counted lost once per run, wherever
//! it is found ended: by the keep-alive, an extension or the release.
//!
//! Without the feature, every function the executor calls here is empty and
//! inline: no clock reads, no recorder lookups.

#[cfg(feature = "metrics")]
pub use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use ::metrics::{
        Gauge, SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram,
        gauge, histogram,
    };

    use std::sync::Arc;

    use crate::{LockConfiguration, LockError};

    /// Counter: calls that tried to take a lock (acquired + skipped + errors).
    pub const ATTEMPTS: &str = "shedlock_attempts_total";
    /// Counter: calls that took the lock, so the job ran.
    pub const ACQUIRED: &str = "shedlock_acquired_total";
    /// Counter: calls that found the lock held elsewhere and did not run the job.
    pub const SKIPPED: &str = "shedlock_skipped_total";
    /// Counter: calls that failed to take the lock; label `kind` is [`LockError::kind`].
    pub const ERRORS: &str = "shedlock_errors_total";
    /// Counter: leases that ended (expired, or were taken) under a running job.
    pub const LEASES_LOST: &str = "shedlock_leases_lost_total";
    /// Counter: extensions of a running job's lease (keep-alive or
    /// `extend_active_lock`) that did not extend it.
    pub const EXTENSIONS_FAILED: &str = "shedlock_extensions_failed_total";
    /// Counter: ticks of a schedule that no replica ran, found by the claim
    /// of a later tick (`for_tick`, `every`, the cron helper).
    pub const MISSED_TICKS: &str = "shedlock_missed_ticks_total";
    /// Histogram, seconds: how long jobs ran under their lock.
    pub const EXECUTION_SECONDS: &str = "shedlock_execution_seconds";
    /// Histogram, seconds: from the start of an attempt to the lock being taken.
    pub const WAIT_SECONDS: &str = "shedlock_wait_seconds";
    /// Gauge: jobs running under their lock in this process now.
    pub const ACTIVE_EXECUTIONS: &str = "shedlock_active_executions";
    /// Gauge, seconds since the Unix epoch: when this process last took the
    /// lock. Unlike a counter born at 1, it shows a first run after a restart
    /// to `max_over_time`, so "did not run for a day" needs no special case.
    pub const LAST_ACQUIRED: &str = "shedlock_last_acquired_timestamp_seconds";

    /// Whether templated names are labelled by their rendered name.
    static RENDERED_NAMES: AtomicBool = AtomicBool::new(false);

    /// Labels the metrics of an attribute with placeholders
    /// (`name = "report-{region}"`) by the rendered name (`report-eu`) instead
    /// of the template, process-wide. Off by default: every argument value
    /// makes new series, so turn it on only when the values are few.
    ///
    /// ```
    /// shedlock_core::metrics::label_rendered_names(true);
    /// ```
    pub fn label_rendered_names(rendered: bool) {
        RENDERED_NAMES.store(rendered, Ordering::Relaxed);
    }

    /// Registers the unit and a description of every shedlock metric with the
    /// installed recorder, for exporters that show them (Prometheus' `# HELP`).
    /// Call it once after installing the recorder; metrics work without it.
    pub fn describe() {
        describe_counter!(
            ATTEMPTS,
            Unit::Count,
            "Calls that tried to take the lock (acquired + skipped + errors)."
        );
        describe_counter!(
            ACQUIRED,
            Unit::Count,
            "Calls that took the lock: the job ran."
        );
        describe_counter!(
            SKIPPED,
            Unit::Count,
            "Calls that found the lock held elsewhere: the job did not run."
        );
        describe_counter!(
            ERRORS,
            Unit::Count,
            "Calls that failed to take the lock, by error kind: the job did not run."
        );
        describe_counter!(
            LEASES_LOST,
            Unit::Count,
            "Leases that ended under a running job."
        );
        describe_counter!(
            EXTENSIONS_FAILED,
            Unit::Count,
            "Extensions of a running job's lease that did not extend it."
        );
        describe_counter!(
            MISSED_TICKS,
            Unit::Count,
            "Ticks of a schedule no replica ran, found by the claim of a later tick."
        );
        describe_histogram!(
            EXECUTION_SECONDS,
            Unit::Seconds,
            "How long jobs ran under their lock."
        );
        describe_histogram!(
            WAIT_SECONDS,
            Unit::Seconds,
            "From the start of an attempt to the lock being taken."
        );
        describe_gauge!(
            ACTIVE_EXECUTIONS,
            Unit::Count,
            "Jobs running under their lock in this process."
        );
        describe_gauge!(
            LAST_ACQUIRED,
            Unit::Seconds,
            "When this process last took the lock, in seconds since the Unix epoch."
        );
    }

    /// The `lock` label of one call's metrics.
    #[derive(Clone, Debug)]
    pub(crate) struct LockLabel(SharedString);

    impl LockLabel {
        /// The lock's name, or `template` (the attribute's name with its
        /// placeholders) unless rendered names were asked for.
        pub(crate) fn new(config: &LockConfiguration, template: Option<&'static str>) -> Self {
            Self::of_name(config.shared_name(), template)
        }

        /// [`new`](Self::new), for a call that has a name but no configuration.
        pub(crate) fn of_name(name: &Arc<str>, template: Option<&'static str>) -> Self {
            match template {
                Some(template) if !RENDERED_NAMES.load(Ordering::Relaxed) => {
                    LockLabel(SharedString::const_str(template))
                }
                _ => LockLabel(SharedString::from(name.clone())),
            }
        }
    }

    /// One attempt to take a lock, counted when it starts; its end is
    /// counted by [`acquired`](Self::acquired), [`skipped`](Self::skipped)
    /// or [`failed`](Self::failed).
    pub(crate) struct Attempt<'a> {
        label: &'a LockLabel,
        started: Instant,
    }

    impl<'a> Attempt<'a> {
        pub(crate) fn start(label: &'a LockLabel) -> Self {
            counter!(ATTEMPTS, "lock" => label.0.clone()).increment(1);
            Attempt {
                label,
                started: Instant::now(),
            }
        }

        /// The lock was taken: records the wait and the time, and counts the
        /// job as running until the returned guard drops.
        pub(crate) fn acquired(self) -> ActiveExecution<'a> {
            let label = &self.label.0;
            let now = Instant::now();
            counter!(ACQUIRED, "lock" => label.clone()).increment(1);
            histogram!(WAIT_SECONDS, "lock" => label.clone()).record(now - self.started);
            let active = gauge!(ACTIVE_EXECUTIONS, "lock" => label.clone());
            active.increment(1.0);
            let unix_time = SystemTime::now().duration_since(UNIX_EPOCH);
            gauge!(LAST_ACQUIRED, "lock" => label.clone())
                .set(unix_time.map_or(0.0, |since| since.as_secs_f64()));
            ActiveExecution {
                label: self.label,
                started: now,
                active,
            }
        }

        /// The lock was held elsewhere (after waiting, if asked).
        pub(crate) fn skipped(self) {
            counter!(SKIPPED, "lock" => self.label.0.clone()).increment(1);
        }

        /// Taking the lock failed with `err`.
        pub(crate) fn failed(self, err: &LockError) {
            counter!(ERRORS, "lock" => self.label.0.clone(), "kind" => err.kind()).increment(1);
        }
    }

    /// A job running under its lock: on drop (the job's end, a panic, or
    /// the caller dropping the run) records how long it ran and leaves the
    /// active-executions gauge.
    pub(crate) struct ActiveExecution<'a> {
        label: &'a LockLabel,
        started: Instant,
        /// The gauge, kept from the increment for the decrement.
        active: Gauge,
    }

    impl ActiveExecution<'_> {
        /// The job ended (the same as dropping the guard).
        pub(crate) fn finish(self) {}
    }

    impl Drop for ActiveExecution<'_> {
        fn drop(&mut self) {
            histogram!(EXECUTION_SECONDS, "lock" => self.label.0.clone())
                .record(self.started.elapsed());
            self.active.decrement(1.0);
        }
    }

    /// The lease ended under a running job (counted once per run, by its
    /// [`ActiveLock`](crate::context::ActiveLock)).
    pub(crate) fn lease_lost(label: &LockLabel) {
        counter!(LEASES_LOST, "lock" => label.0.clone()).increment(1);
    }

    /// An extension of a running job's lease did not extend it.
    pub(crate) fn extension_failed(label: &LockLabel) {
        counter!(EXTENSIONS_FAILED, "lock" => label.0.clone()).increment(1);
    }

    /// A claim found `missed` ticks before its own that no replica ran.
    pub(crate) fn missed_ticks(label: &LockLabel, missed: u64) {
        counter!(MISSED_TICKS, "lock" => label.0.clone()).increment(missed);
    }
}

/// The same API doing nothing: zero-sized types and empty inline functions.
#[cfg(not(feature = "metrics"))]
mod disabled {
    use std::sync::Arc;

    use crate::{LockConfiguration, LockError};

    #[derive(Clone, Debug)]
    pub(crate) struct LockLabel;

    impl LockLabel {
        #[inline(always)]
        pub(crate) fn new(_config: &LockConfiguration, _template: Option<&'static str>) -> Self {
            LockLabel
        }

        #[inline(always)]
        pub(crate) fn of_name(_name: &Arc<str>, _template: Option<&'static str>) -> Self {
            LockLabel
        }
    }

    pub(crate) struct Attempt;

    impl Attempt {
        #[inline(always)]
        pub(crate) fn start(_label: &LockLabel) -> Self {
            Attempt
        }

        #[inline(always)]
        pub(crate) fn acquired(self) -> ActiveExecution {
            ActiveExecution
        }

        #[inline(always)]
        pub(crate) fn skipped(self) {}

        #[inline(always)]
        pub(crate) fn failed(self, _err: &LockError) {}
    }

    pub(crate) struct ActiveExecution;

    impl ActiveExecution {
        #[inline(always)]
        pub(crate) fn finish(self) {}
    }

    #[inline(always)]
    pub(crate) fn lease_lost(_label: &LockLabel) {}

    #[inline(always)]
    pub(crate) fn extension_failed(_label: &LockLabel) {}

    #[inline(always)]
    pub(crate) fn missed_ticks(_label: &LockLabel, _missed: u64) {}
}
