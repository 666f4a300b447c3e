//! Last runs: what each run under a lock did, kept by the store beside the
//! lock (the last [`RUN_HISTORY_LEN`]) and written in the release's round trip.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// How many runs the store keeps per lock (the newest first).
pub const RUN_HISTORY_LEN: usize = 20;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// The job returned normally (for a job returning `Result`, `Ok`).
    Ok,
    /// The job returned `Err`: an attribute function or a `shedlock::cron`
    /// job whose output is a `Result`. (The executor does not read its
    /// task's output: a task it runs that ends is `Ok`.)
    Error,
    /// The job panicked; the lock was released before the panic went on.
    Panic,
    /// The lease ended under the job (an extension found it gone, or the
    /// store stayed unreachable to its end).
    LeaseLost,
    /// The run was cancelled before the job ended: its future was dropped
    /// (by its caller, or by a stopped cron scheduler); the lock was given back.
    Cancelled,
    /// Not a run: ticks of the job's schedule that no replica ran, found by
    /// the claim of a later tick. The record's `started_at` is the first
    /// missed tick, `finished_at` the last, and `missed_ticks` how many.
    Missed,
}

impl RunOutcome {
    /// `"ok"`, `"error"`, `"panic"`, `"lease_lost"` or `"cancelled"`: how
    /// stores and the `shedlock` command write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Error => "error",
            RunOutcome::Panic => "panic",
            RunOutcome::LeaseLost => "lease_lost",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Missed => "missed",
        }
    }

    /// The outcome as one byte, never 0 (which stands for "none noted").
    pub(crate) fn code(self) -> u8 {
        match self {
            RunOutcome::Ok => 1,
            RunOutcome::Error => 2,
            RunOutcome::Panic => 3,
            RunOutcome::LeaseLost => 4,
            RunOutcome::Cancelled => 5,
            RunOutcome::Missed => 6,
        }
    }

    /// The outcome [`code`](Self::code) gave `code`; `None` for 0.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RunOutcome::Ok),
            2 => Some(RunOutcome::Error),
            3 => Some(RunOutcome::Panic),
            4 => Some(RunOutcome::LeaseLost),
            5 => Some(RunOutcome::Cancelled),
            6 => Some(RunOutcome::Missed),
            _ => None,
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ok" => Ok(RunOutcome::Ok),
            "error" => Ok(RunOutcome::Error),
            "panic" => Ok(RunOutcome::Panic),
            "lease_lost" => Ok(RunOutcome::LeaseLost),
            "cancelled" => Ok(RunOutcome::Cancelled),
            "missed" => Ok(RunOutcome::Missed),
            other => Err(format!("unknown run outcome {other:?}")),
        }
    }
}

/// A run that has just finished, as its holder hands it to the store with
/// the release ([`Lease::release_after_run`](crate::Lease::release_after_run)).
/// The store adds the finish time (its own clock) and the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedRun {
    /// How long the job ran, by the holder's monotonic clock.
    pub duration: Duration,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The lease's fencing token, if it was issued.
    pub fencing_token: Option<u64>,
}

/// One run as the store keeps it: see [`LockAdmin::run_history`](crate::LockAdmin::run_history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// When the run started: `finished_at - duration`.
    pub started_at: SystemTime,
    /// When the run finished: by the clock of the process that ran it (a
    /// store may use its own clock instead; memory and Redis use the process's).
    pub finished_at: SystemTime,
    /// How long the job ran.
    pub duration: Duration,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Who ran it (the holder's `locked_by`).
    pub locked_by: String,
    /// The run's fencing token, if it was issued.
    pub fencing_token: Option<u64>,
    /// For a [`Missed`](RunOutcome::Missed) entry: how many ticks no replica
    /// ran, from `started_at` to `finished_at`; `None` for a run.
    pub missed_ticks: Option<u64>,
}

impl RunRecord {
    /// A record of `run` by `locked_by`, finished at `finished_at`. A
    /// [`Missed`](RunOutcome::Missed) entry is kept as a run would be, its
    /// token slot holding how many ticks were missed ([`MissedTicks::as_run`]).
    pub fn new(run: &FinishedRun, locked_by: impl Into<String>, finished_at: SystemTime) -> Self {
        let missed = run.outcome == RunOutcome::Missed;
        RunRecord {
            started_at: finished_at.checked_sub(run.duration).unwrap_or(finished_at),
            finished_at,
            duration: run.duration,
            outcome: run.outcome,
            locked_by: locked_by.into(),
            fencing_token: run.fencing_token.filter(|_| !missed),
            missed_ticks: run.fencing_token.filter(|_| missed),
        }
    }
}

/// Ticks of a schedule that no replica ran, found by the claim of a later
/// tick: the first, the last, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissedTicks {
    /// The first tick no replica ran.
    pub first: SystemTime,
    /// The last one, before the tick claimed now.
    pub last: SystemTime,
    /// How many, from `first` to `last`.
    pub count: u64,
}

impl MissedTicks {
    /// How stores keep the entry: as a run that finished at `last` and took
    /// from `first` to `last`, with outcome `missed` and the count in the
    /// token's place ([`RunRecord::new`] reads it back so).
    pub fn as_run(&self) -> (FinishedRun, SystemTime) {
        let run = FinishedRun {
            duration: self.last.duration_since(self.first).unwrap_or_default(),
            outcome: RunOutcome::Missed,
            fencing_token: Some(self.count),
        };
        (run, self.last)
    }
}

/// The attribute's outcome probe: `(&OutcomeProbe(&output)).shedlock_outcome()`
/// is [`RunOutcome::Error`] for an `Err`, and [`RunOutcome::Ok`] for every
/// other output (autoref specialisation: the `Result` impl is found first).
#[doc(hidden)]
pub struct OutcomeProbe<'a, T>(pub &'a T);

/// The probe's answer for a `Result` output.
#[doc(hidden)]
pub trait ResultOutcome {
    /// `Error` for an `Err`.
    fn shedlock_outcome(&self) -> RunOutcome;
}

impl<T, E> ResultOutcome for OutcomeProbe<'_, Result<T, E>> {
    fn shedlock_outcome(&self) -> RunOutcome {
        if self.0.is_err() {
            RunOutcome::Error
        } else {
            RunOutcome::Ok
        }
    }
}

/// The probe's answer for any other output.
#[doc(hidden)]
pub trait AnyOutcome {
    /// Always `Ok`.
    fn shedlock_outcome(&self) -> RunOutcome {
        RunOutcome::Ok
    }
}

impl<T> AnyOutcome for &OutcomeProbe<'_, T> {}

/// Notes `outcome` for the run of the innermost lock the task holds: what
/// its history records when the job's future ends (unless the lease was
/// lost, or the job panicked). Called by the attribute's expansion, and by
/// `shedlock::cron` jobs, whose output the executor cannot read.
#[doc(hidden)]
pub fn note_outcome(outcome: RunOutcome) {
    crate::context::note_outcome(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_from_its_text_and_its_code() {
        let all = [
            RunOutcome::Ok,
            RunOutcome::Error,
            RunOutcome::Panic,
            RunOutcome::LeaseLost,
            RunOutcome::Cancelled,
        ];
        for outcome in all {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
            assert_ne!(outcome.code(), 0);
            assert_eq!(RunOutcome::from_code(outcome.code()), Some(outcome));
        }
        assert_eq!(RunOutcome::from_code(0), None);
    }
}
