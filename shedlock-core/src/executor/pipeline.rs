//! The one run pipeline, for a lease and for a scope alike: the task runs
//! under its hold beside a watcher, then the hold is given back with the
//! run's outcome, even when the call is dropped mid-run.

use std::future::Future;
use std::panic::resume_unwind;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::ExecutionOptions;
use super::lease_watch::{run_watched, watch_lease};
use super::reentry::run_nested;
use crate::context::{ActiveLock, HeldLocks};
use crate::metrics::{Attempt, LockLabel};
use crate::scopes::ScopeRun;
use crate::{FinishedRun, LockConfiguration, LockError, LockGuard, RunOutcome};

/// What a run holds while its task runs.
pub(crate) enum Hold {
    /// A lease of its own, released after the run with its outcome.
    Lease(LockGuard),
    /// A place in a job scope this replica owns, left after the run; the
    /// scope's lease is its owner's to keep.
    Scope(ScopeRun),
}

/// The one run pipeline, for a lease and for a scope alike: a nested call on
/// a held lock runs on that hold; otherwise `take` gets the hold (`None`:
/// held elsewhere, skipped), and `task` runs under it beside a watcher that
/// marks the lease lost (cancelling the task when asked), then the hold is
/// given back.
pub(crate) async fn run_held<F: Future>(
    provider_scope: &str,
    config: &LockConfiguration,
    label: LockLabel,
    options: ExecutionOptions,
    take: impl Future<Output = Result<Option<Hold>, LockError>>,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    let held = HeldLocks::current();
    let name = config.name();
    if let Some(active) = held.find(provider_scope, name) {
        // Boxed: the nested task's future would otherwise take room in this
        // future beside the one it runs under a hold of its own.
        return run_nested(active, config, &label, Box::pin(task)).await;
    }
    tracing::debug!(lock = %name, "attempting lock");
    let attempt = Attempt::start(&label);
    let hold = match take.await {
        Ok(Some(hold)) => hold,
        Ok(None) => {
            tracing::debug!(lock = %name, "lock held elsewhere; skipping");
            attempt.skipped();
            return Ok(None);
        }
        Err(err) => {
            tracing::warn!(lock = %name, error = %err, "lock attempt failed; the task did not run");
            attempt.failed(&err);
            return Err(err);
        }
    };
    let execution = attempt.acquired();
    // The job runs inside a span, so its own log lines carry its lock.
    let span = tracing::info_span!(
        "scheduler_lock",
        lock = %name,
        fencing_token = tracing::field::Empty,
        mode = ?config.mode(),
        scope = tracing::field::Empty,
    );
    let (held, active, scope_run) = match hold {
        Hold::Lease(guard) => {
            if let (Some(tick), Some(previous)) = (guard.tick(), guard.previous_tick())
                && let Some(missed) = crate::ticks::report_missed(name, &label, previous, tick)
                && let Err(err) = guard.record_missed(&missed).await
            {
                tracing::warn!(lock = %name, error = %err, "the missed ticks were not recorded in the history");
            }
            let token = guard.info().issued_fencing_token();
            tracing::debug!(lock = %name, fencing_token = ?token, "lock acquired");
            if let Some(token) = token {
                span.record("fencing_token", token);
            }
            let (held, active) = held.with(guard, config.mode(), provider_scope, label.clone());
            (held, active, None)
        }
        Hold::Scope(run) => {
            tracing::debug!(lock = %name, scope = %run.scope(), term = run.term(), "running in owned scope");
            span.record("fencing_token", run.term());
            span.record("scope", run.scope());
            let (held, active) = held.with_kept(
                run.info(config),
                run.lost_signal(),
                config.mode(),
                provider_scope,
                label.clone(),
            );
            (held, active, Some(run))
        }
    };
    let started = Instant::now();
    // Declared before the task and its watcher, so dropped after them.
    let cancelled = CancelledRun {
        active: &active,
        started,
    };
    let task = pin!(held.scope(task.instrument(span)));
    // Returns once the lease is lost, marked so: a scope's owner signals
    // it; an own lease is watched when the options ask (keep-alive, cancel).
    let watcher = async {
        match &scope_run {
            Some(run) => {
                run.lost_signal().wait().await;
                active.mark_lost();
            }
            None => watch_lease(&active, options.keep_alive).await,
        }
    };
    let watched = scope_run.is_some() || options.watches_lease();
    let cancel = options.cancels_on_lease_loss();
    let outcome = run_watched(name, watched.then_some(cancel), task, watcher).await;
    cancelled.ended();
    execution.finish();
    // A scope's place is left here; a lease is released with the run's outcome.
    drop(scope_run);
    // Uncontended once the task is done, unless a keep-alive is mid-extension.
    let guard = match active.guard.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(_) => active.guard.lock().await.take(),
    };
    if let Some(guard) = guard {
        let run = FinishedRun {
            duration: started.elapsed(),
            outcome: match &outcome {
                _ if active.is_lost() => RunOutcome::LeaseLost,
                Some(Ok(_)) => active.noted_outcome().unwrap_or(RunOutcome::Ok),
                Some(Err(_)) => RunOutcome::Panic,
                None => RunOutcome::LeaseLost,
            },
            fencing_token: guard.info().issued_fencing_token(),
        };
        give_back(&active, guard, run).await;
    }
    match outcome {
        Some(Ok(output)) => Ok(Some(output)),
        Some(Err(panic)) => resume_unwind(panic),
        None => Err(LockError::LeaseLost {
            name: name.to_owned(),
        }),
    }
}

/// A run whose future may be dropped before its task ends (its caller
/// cancelled it: a timeout, a `select!`, a stopped cron job). Dropped so, it
/// takes the guard and gives the lease back in the background, recording
/// the run as cancelled; a run that ends says so with [`ended`](Self::ended).
struct CancelledRun<'a> {
    active: &'a Arc<ActiveLock>,
    started: Instant,
}

impl CancelledRun<'_> {
    /// The task ended: the pipeline gives the lease back itself.
    fn ended(self) {
        std::mem::forget(self);
    }
}

impl Drop for CancelledRun<'_> {
    fn drop(&mut self) {
        // Free: the task and the watcher, which may hold it across an
        // extension, were declared after this and dropped first. (Were it
        // busy, the guard's own drop would release it, unrecorded.)
        let Some(guard) = (self.active.guard.try_lock().ok()).and_then(|mut guard| guard.take())
        else {
            return;
        };
        let run = FinishedRun {
            duration: self.started.elapsed(),
            outcome: if self.active.is_lost() {
                RunOutcome::LeaseLost
            } else {
                RunOutcome::Cancelled
            },
            fencing_token: guard.info().issued_fencing_token(),
        };
        tracing::debug!(lock = %guard.name(), "locked run cancelled before its task ended; giving its lock back");
        let active = self.active.clone();
        let release = async move { give_back(&active, guard, run).await };
        // Without a runtime, the guard's drop says the lease is left to end.
        crate::release_tracking::spawn_release(release);
    }
}

/// Gives a run's lease back, recording `run` in the lock's history; a lease
/// found ended counts as lost, once per run (its watcher may have counted it).
async fn give_back(active: &ActiveLock, guard: LockGuard, run: FinishedRun) {
    // Errors are logged by the guard; the task's output is what the caller needs.
    if let Ok(false) = guard.release_after_run(run).await {
        active.found_ended_at_release();
    }
}
