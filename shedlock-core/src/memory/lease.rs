//! A lease of the in-memory store: extended, released and recorded by its
//! acquisition number, so an ended lease never touches the next holder's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::state::{State, lock_state};
use crate::provider::{BoxFuture, Lease};
use crate::{FinishedRun, LockError, MissedTicks, ReleaseNotifiers, RunOutcome, RunRecord};

pub(super) struct MemoryLease {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) releases: Arc<ReleaseNotifiers>,
    pub(super) name: Arc<str>,
    pub(super) acquisition: u64,
    pub(super) locked_by: Arc<str>,
}

impl Lease for MemoryLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = lock_state(&self.state);
            Ok(match state.owned(&self.name, self.acquisition, now) {
                Some(held) => {
                    held.expires_at = now + lock_at_most_for;
                    held.renewed_at = now;
                    held.renewals = held.renewals.saturating_add(1);
                    true
                }
                None => false,
            })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move { Ok(self.release_recording(keep_for, None)) })
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move { Ok(self.release_recording(keep_for, Some(run))) })
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            self.record(run, SystemTime::now());
            Ok(())
        })
    }

    fn record_missed<'a>(
        &'a self,
        missed: &'a MissedTicks,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let (run, finished_at) = missed.as_run();
            self.record(&run, finished_at);
            Ok(())
        })
    }
}

impl MemoryLease {
    /// Records `run`, finished at `finished_at`, in the lock's history.
    fn record(&self, run: &FinishedRun, finished_at: SystemTime) {
        let record = RunRecord::new(run, &*self.locked_by, finished_at);
        lock_state(&self.state).record_run(&self.name, record);
    }

    /// Releases the lease and records `run`, in one step; a lease that has
    /// ended records the run as lost.
    fn release_recording(&self, keep_for: Duration, run: Option<&FinishedRun>) -> bool {
        let now = Instant::now();
        let mut state = lock_state(&self.state);
        let Some(held) = state.owned(&self.name, self.acquisition, now) else {
            if let Some(run) = run {
                let lost = FinishedRun {
                    outcome: RunOutcome::LeaseLost,
                    ..*run
                };
                let record = RunRecord::new(&lost, &*self.locked_by, SystemTime::now());
                state.record_run(&self.name, record);
            }
            return false;
        };
        if keep_for.is_zero() {
            if let Some(entry) = state.locks.get_mut(&*self.name) {
                entry.holders.remove(&self.acquisition);
            }
        } else {
            held.expires_at = held.expires_at.min(now + keep_for);
        }
        if let Some(run) = run {
            let record = RunRecord::new(run, &*self.locked_by, SystemTime::now());
            state.record_run(&self.name, record);
        }
        drop(state);
        if keep_for.is_zero() {
            self.releases.notify_released(&self.name);
        }
        true
    }
}
