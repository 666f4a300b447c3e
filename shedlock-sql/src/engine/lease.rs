//! The lease of one acquisition: extension, release, and the run it records.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use shedlock_core::{BoxFuture, FinishedRun, Lease, LockError, MissedTicks, ReleaseNotifiers};

use crate::dialect::{Dialect, Statements};

use super::runner::execute;
use super::*;

/// One acquisition's lease: its row, found by name and unique `locked_by`.
pub(super) struct SqlLease<D: Dialect> {
    pub(super) engine: Arc<SqlEngine<D>>,
    pub(super) statements: Arc<Statements>,
    pub(super) server: Arc<str>,
    pub(super) releases: Arc<ReleaseNotifiers>,
    pub(super) timeout: Duration,
    /// Whether a release after a run records it.
    pub(super) history: bool,
    /// The holder's place in the exclusive waiters' queue being given up
    /// (see `SqlLocks::try_lock_as`); released after it.
    pub(super) dequeuing: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(super) row: LeaseRow,
}

/// What a failed extension leaves.
const UNEXTENDED: &str = "the lease still ends at its previous end";
/// What a failed release leaves.
const UNRELEASED: &str = "the lease ends at lock_at_most_for at the latest";

impl<D: Dialect> Lease for SqlLease<D> {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            self.engine
                .extend(&self.statements, &self.row, lock_at_most_for, self.timeout)
                .await
                .map_err(|failure| self.error(failure, "extending", UNEXTENDED))
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(self.release_with(keep_for, None))
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(self.release_with(keep_for, self.history.then_some(run)))
    }

    fn record_missed<'a>(
        &'a self,
        missed: &'a MissedTicks,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        let (run, finished_at) = missed.as_run();
        Box::pin(self.record(run, Some(finished_at), "missed ticks"))
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.record(*run, None, "a lost run"))
    }
}

impl<D: Dialect> SqlLease<D> {
    /// The error of `action` ("extending", ...) on this lease's lock, which
    /// failed; `consequence` says what that leaves.
    fn error(&self, failure: Failure, action: &str, consequence: &str) -> LockError {
        let action = format!("{action} lock '{}'", self.row.name);
        failure.into_error::<D>(&self.server, action, consequence)
    }

    /// Records `run` in the lock's history (if it keeps one), finished now
    /// by the database's clock or at `finished_at`; `what` names it in an error.
    async fn record(
        &self,
        run: FinishedRun,
        finished_at: Option<SystemTime>,
        what: &str,
    ) -> Result<(), LockError> {
        if !self.history {
            return Ok(());
        }
        self.engine
            .record_run(&self.statements, &self.row, &run, finished_at, self.timeout)
            .await
            .map_err(|failure| {
                let action = format!("recording {what} of");
                self.error(failure, &action, "it is missing from the lock's history")
            })
    }

    /// Takes the exclusive waiter `waiter`, now this lease's holder, out of
    /// the queue, in a task of its own.
    pub(super) fn dequeue(&self, waiter: String) {
        let (engine, statements) = (self.engine.clone(), self.statements.clone());
        let (name, timeout) = (self.row.name.clone(), self.timeout);
        let task = tokio::spawn(async move {
            if let Err(failure) = engine.dequeue(&statements, &name, &waiter, timeout).await {
                tracing::debug!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot take the waiter out of the queue; its place lapses by itself"
                );
            }
        });
        *self
            .dequeuing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(task);
    }

    /// Releases the lease, recording `run` in the same transaction if given.
    pub(super) async fn release_with(
        &self,
        keep_for: Duration,
        run: Option<&FinishedRun>,
    ) -> Result<bool, LockError> {
        // Out of the queue first, so the place never outlives the lease.
        let dequeuing = self
            .dequeuing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = dequeuing {
            let _ = task.await;
        }
        let released = match run {
            Some(run) => {
                self.engine
                    .release_after_run(&self.statements, &self.row, keep_for, run, self.timeout)
                    .await
            }
            None => {
                self.engine
                    .release(&self.statements, &self.row, keep_for, self.timeout)
                    .await
            }
        }
        .map_err(|failure| self.error(failure, "releasing", UNRELEASED))?;
        // Waiters in this process wake when the lock is free: now, or once kept long enough.
        if released && keep_for.is_zero() {
            self.releases.notify_released(&self.row.name);
        } else if released {
            let free_at = Instant::now() + keep_for;
            self.releases.note_lease_end(&self.row.name, Some(free_at));
        }
        Ok(released)
    }
}

impl<D: Dialect> SqlEngine<D> {
    /// Extends `lease` for `lock_at_most_for` in one transaction: a shared
    /// holder's row, then the marker, which must both still be live (the
    /// holder's lease may end between the two statements, and an exclusive
    /// holder take the row); an exclusive holder's row, then its renewal
    /// count. False, with nothing changed, when the lease had ended.
    pub(super) async fn extend(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        lock_at_most_for: Duration,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let kinds = &statements.kinds;
        // Each statement, and whether it must match the lease's one row.
        let steps = if lease.permits.is_some() {
            [
                (&kinds.lock_row, false),
                (&kinds.extend, true),
                (&kinds.settle, true),
            ]
            .to_vec()
        } else {
            [(&statements.extend, true), (&kinds.renew_exclusive, false)].to_vec()
        };
        let params = LeaseParams {
            lock_at_most_for,
            ..LeaseParams::of_lease(lease)
        };
        let mut connection = self.checkout(timeout).await?;
        let mut transaction = Self::begin(&mut connection, timeout).await?;
        for (statement, must_match) in steps {
            let matched = execute::<D>(&mut *transaction, statement, &params, timeout).await?;
            if must_match && matched != 1 {
                answer(timeout, transaction.rollback()).await?;
                return Ok(false);
            }
        }
        answer(timeout, transaction.commit()).await?;
        Ok(true)
    }
}
