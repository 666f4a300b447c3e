//! Acquisition: taking a lock, waiting for one, and an acquisition whose
//! answer did not come in time (released in the background once it does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shedlock_core::{
    BackgroundRelease, GrantedLease, Lease, LockConfiguration, LockError, LockGuard, ReleaseWatch,
};

use crate::dialect::{Dialect, Statements};
use crate::table::{acquisition_locked_by, check_lock_name};

use super::*;

impl<D: Dialect> SqlLocks<D> {
    pub(crate) async fn try_lock(
        &self,
        config: &LockConfiguration,
    ) -> Result<Option<LockGuard>, LockError> {
        self.try_lock_as(config, None).await
    }

    /// As `try_lock`, for `waiter` if given: taking the lock takes it out
    /// of the queue if it had queued, beside its run (the lease's release
    /// waits for that), so the hand-off to it costs no statement more.
    pub(super) async fn try_lock_as(
        &self,
        config: &LockConfiguration,
        waiter: Option<&shedlock_core::Waiter>,
    ) -> Result<Option<LockGuard>, LockError> {
        check_lock_name(config.name())?;
        config.check_tick()?;
        let prepared = self.prepared().await?;
        let action = || format!("acquiring lock '{}'", config.name());
        let mut connection = self
            .engine
            .checkout(self.timeout)
            .await
            .map_err(|failure| {
                failure.into_error::<D>(&self.server, action(), "the lock was not taken")
            })?;
        let lease = Arc::new(SqlLease {
            engine: self.engine.clone(),
            statements: prepared.statements.clone(),
            server: self.server.clone(),
            releases: self.releases.clone(),
            timeout: self.timeout,
            history: self.run_history,
            dequeuing: std::sync::Mutex::new(None),
            row: LeaseRow {
                name: config.shared_name().clone(),
                locked_by: acquisition_locked_by(&self.locked_by),
                lock_at_least_for: config.lock_at_least_for(),
                permits: config.mode().permits(),
                tick: config.tick_millis(),
                previous_tick: std::sync::OnceLock::new(),
            },
        });
        let lock_at_most_for = config.lock_at_most_for();
        let default_capacity = config.capacity();
        // The statements keep running after this call stops waiting for
        // them (timeout, or this future dropped): their answer then still
        // comes back to a task, which releases whatever they took. No
        // guessing. Bounded as a whole here, by `answer_within`, and in that
        // task: no timer of their own.
        let requested_at = Instant::now();
        let deadline = requested_at + lock_at_most_for;
        let running = lease.clone();
        let mut acquisition = InFlight::<D> {
            running: Some(Box::pin(async move {
                let reply = running
                    .engine
                    .acquire(
                        &mut connection,
                        &running.statements,
                        &running.row,
                        (lock_at_most_for, default_capacity),
                        (UNBOUNDED, running.timeout),
                    )
                    .await;
                drop(connection);
                reply
            })),
            lease: lease.clone(),
            in_flight: lock_at_most_for.min(MAX_IN_FLIGHT).max(self.timeout),
            deadline,
        };
        match acquisition.answer_within(self.timeout).await {
            Some(Ok(Some(token))) => {
                if let Some(waiter) = waiter
                    && self.queued.take(waiter)
                {
                    lease.dequeue(waiter.id().to_owned());
                }
                let previous_tick = lease.row.previous_tick.get().copied().flatten();
                let granted =
                    GrantedLease::new(config, token, requested_at, lease).after_tick(previous_tick);
                Ok(granted.vouch().await)
            }
            Some(Ok(None)) => {
                self.hint_lease_end(&prepared.statements, config.name())
                    .await;
                Ok(None)
            }
            Some(Err(failure)) if failure.unanswered => {
                // The error names the kind; the driver's own words go to the log.
                let reason = format!("{} at {}: {}", D::TITLE, self.server, failure.what_happened);
                if let Some(cause) = &failure.cause {
                    tracing::debug!(lock = %config.name(), error = %cause, "the acquisition's answer was lost");
                }
                Err(release_uncertain_acquisition(lease, deadline, reason).await)
            }
            Some(Err(failure)) => {
                Err(failure.into_error::<D>(&self.server, action(), "the lock was not taken"))
            }
            None => {
                let reason = format!(
                    "{} at {} did not answer within {:?}",
                    D::TITLE,
                    self.server,
                    self.timeout
                );
                tracing::warn!(
                    lock = %config.name(), %reason,
                    "lock acquisition uncertain; whatever it takes will be released when it answers"
                );
                Err(LockError::AcquisitionUncertain {
                    name: config.name().to_owned(),
                    reason,
                    released: false,
                })
            }
        }
    }

    /// As `try_lock`; a failed exclusive attempt queues `waiter`, so new
    /// shared holders stay out until it has had its turn, and a successful
    /// one takes it out of the queue (if it had queued).
    pub(crate) async fn try_lock_waiting(
        &self,
        config: &LockConfiguration,
        waiter: &shedlock_core::Waiter,
    ) -> Result<Option<LockGuard>, LockError> {
        if config.mode() != shedlock_core::LockMode::Exclusive {
            return self.try_lock(config).await;
        }
        let acquired = self.try_lock_as(config, Some(waiter)).await?;
        if acquired.is_none() {
            let statements = &self.prepared().await?.statements;
            let name = config.name();
            match self
                .engine
                .queue(statements, name, waiter, self.timeout)
                .await
            {
                Ok(()) => self.queued.queued(waiter),
                // The attempt's answer stands; shared holders may go first this time.
                Err(failure) => tracing::warn!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot queue the exclusive waiter; new shared holders may go first"
                ),
            }
        }
        Ok(acquired)
    }

    /// Tells this process's waiters on `name`, if any, when its holder's
    /// lease ends, so they try again then rather than at their next poll.
    /// One more statement, only for a name somebody here waits for.
    pub(super) async fn hint_lease_end(&self, statements: &Statements, name: &str) {
        if !self.releases.is_watched(name) {
            return;
        }
        let asked_at = Instant::now();
        match self.engine.lease_left(statements, name, self.timeout).await {
            Ok(left) => self
                .releases
                .note_lease_end(name, left.map(|left| asked_at + left)),
            Err(failure) => {
                tracing::debug!(
                    lock = %name, what = %failure.what_happened, error = ?failure.cause,
                    "cannot read when the held lock's lease ends; waiters poll"
                )
            }
        }
    }

    /// A watch on releases of `name`, heard from this process and, where
    /// the database announces them, from others (listening from now on).
    pub(crate) async fn watch_releases(&self, name: &str) -> ReleaseWatch {
        let watch = self.releases.watch(name);
        if let Some(feed) = &self.feed {
            feed.listen().await;
        }
        watch
    }
}

pub(super) type Answer = Result<Option<u64>, Failure>;

/// An acquisition's statements and the lease they may take, run by the
/// caller while it waits for them (no task of their own, no thread hop).
/// Dropped before its answer (the caller timed out, or its future was
/// dropped), it hands them to a task that awaits the answer and releases
/// whatever they took.
pub(super) struct InFlight<D: Dialect> {
    pub(super) running: Option<Pin<Box<dyn Future<Output = Answer> + Send>>>,
    /// The lease the statements may take.
    pub(super) lease: Arc<SqlLease<D>>,
    /// How long the task awaits the answer; past it, the statements are
    /// given up as unanswered.
    pub(super) in_flight: Duration,
    /// When a lease the acquisition takes ends at the latest.
    pub(super) deadline: Instant,
}

impl<D: Dialect> InFlight<D> {
    /// The answer, if it comes within `timeout`.
    pub(super) async fn answer_within(&mut self, timeout: Duration) -> Option<Answer> {
        let running = self.running.as_mut()?;
        let answer = tokio::time::timeout(timeout, running).await.ok()?;
        self.running = None;
        Some(answer)
    }
}

impl<D: Dialect> Drop for InFlight<D> {
    fn drop(&mut self) {
        if let Some(running) = self.running.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (lease, in_flight, deadline) = (self.lease.clone(), self.in_flight, self.deadline);
            runtime.spawn(async move {
                let reply = tokio::time::timeout(in_flight, running)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure {
                            unanswered: true,
                            what_happened: format!("no answer within {in_flight:?}"),
                            cause: None,
                        })
                    });
                settle_abandoned_acquisition(reply, lease, deadline).await;
            });
        }
    }
}

/// The longest an acquisition's answer is awaited in the background. Past
/// it, the connection is given up and the lease it may take is looked for
/// (and released) until `lock_at_most_for` has passed.
pub(super) const MAX_IN_FLIGHT: Duration = Duration::from_secs(600);

/// After an acquisition whose answer was lost (a broken connection): release
/// whatever it may have taken (`locked_by` is unique, so only that
/// acquisition's row can match), then report the failure.
pub(super) async fn release_uncertain_acquisition<D: Dialect>(
    lease: Arc<SqlLease<D>>,
    deadline: Instant,
    reason: String,
) -> LockError {
    let name = lease.row.name.clone();
    // Found and released: settled. Not found: the statement may still land.
    let released = matches!(lease.release(Duration::ZERO).await, Ok(true));
    if released {
        tracing::warn!(lock = %name, %reason, "lock acquisition uncertain; the lease it took was released");
    } else {
        tracing::error!(
            lock = %name, %reason,
            "lock acquisition uncertain; looking for its lease in the background"
        );
        BackgroundRelease::possibly_taken(name.clone(), lease, deadline).spawn();
    }
    LockError::AcquisitionUncertain {
        name: name.to_string(),
        reason,
        released,
    }
}

/// The answer of an acquisition nobody waits for any more (timed out, or
/// the caller's future was dropped): release what it took, or may have
/// taken, until it would have ended (`deadline`).
pub(super) async fn settle_abandoned_acquisition<D: Dialect>(
    reply: Result<Option<u64>, Failure>,
    lease: Arc<SqlLease<D>>,
    deadline: Instant,
) {
    let name = lease.row.name.clone();
    let release = match reply {
        Ok(Some(_)) => BackgroundRelease::held(name, lease, deadline),
        Err(failure) if failure.unanswered => {
            BackgroundRelease::possibly_taken(name, lease, deadline)
        }
        Ok(None) | Err(_) => return,
    };
    release.run().await;
}
