//! This replica's ownership of one scope: the local slots of its jobs, and
//! the keeper that renews its lease until it is lost or given up.

use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::ScopeSettings;
use super::registry::{REGISTRY, ReplicaKey};
use crate::LockGuard;
use crate::lease_keeping::{LostSignal, keep_lease};

/// This replica's ownership of one scope.
pub(super) struct Ownership {
    pub(super) key: ReplicaKey,
    pub(super) scope: Arc<str>,
    pub(super) term: u64,
    /// Shared with the scope's runs, which see a loss at once.
    pub(super) lost: Arc<LostSignal>,
    /// The last successful renewal's request time + the renew deadline (see
    /// `act_until`): past it the keeper gives up, so no run starts after it
    /// whatever the keeper's state.
    pub(super) valid_until: Mutex<Instant>,
    /// Local slots of the scope's jobs, shared with the scope's earlier and
    /// later ownerships on this replica.
    pub(super) jobs: Arc<JobSlots>,
    /// Set (under `jobs`) when the scope is being given up: no run starts.
    pub(super) closing: AtomicBool,
    /// Runs in progress, and a wake-up for shutdown when they reach zero.
    pub(super) running: AtomicUsize,
    pub(super) idle: Notify,
    /// Asks the keeper to give the scope up.
    pub(super) stop: Notify,
    pub(super) keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The local slots of one scope's jobs on one replica, by job name.
pub(super) type JobSlots = Mutex<HashMap<Arc<str>, JobSlot>>;

/// One job's local slot on the owner.
pub(super) struct JobSlot {
    busy: bool,
    /// `lock_at_least_for` after the last run started.
    free_at: Instant,
    freed: Arc<Notify>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ownership {
    /// Whether the keeper has ended (or never started).
    pub(super) fn keeper_finished(&self) -> bool {
        lock(&self.keeper)
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Stops the keeper: no run starts any more, and the lease is given back
    /// once the runs in progress have ended (or the lease has anyway).
    pub(super) fn stop_keeping(&self) {
        self.lost.signal();
        self.stop.notify_one();
    }

    pub(super) fn is_valid(&self) -> bool {
        !self.lost.is_set() && Instant::now() < *lock(&self.valid_until)
    }

    /// Takes the job's local slot: at once, or waiting up to `wait_for`.
    pub(super) async fn enter(
        self: &Arc<Self>,
        name: &Arc<str>,
        wait_for: Option<Duration>,
        lock_at_least_for: Duration,
    ) -> Option<SlotGuard> {
        let deadline = wait_for.and_then(|wait_for| Instant::now().checked_add(wait_for));
        loop {
            let freed: Arc<Notify>;
            let notified;
            let free_at = {
                let mut jobs = lock(&self.jobs);
                if self.closing.load(Ordering::Acquire) || self.lost.is_set() {
                    return None;
                }
                let slot = jobs.entry(name.clone()).or_insert_with(|| JobSlot {
                    busy: false,
                    free_at: Instant::now(),
                    freed: Arc::new(Notify::new()),
                });
                let now = Instant::now();
                if !slot.busy && now >= slot.free_at {
                    slot.busy = true;
                    slot.free_at = now + lock_at_least_for;
                    self.running.fetch_add(1, Ordering::AcqRel);
                    return Some(SlotGuard {
                        ownership: self.clone(),
                        name: name.clone(),
                    });
                }
                // Registered while the slot is still locked: a run that
                // frees it right after still wakes this waiter.
                freed = slot.freed.clone();
                notified = freed.notified();
                (!slot.busy).then_some(slot.free_at)
            };
            let until = match (wait_for, deadline) {
                (None, _) => return None,
                (Some(_), Some(deadline)) if Instant::now() >= deadline => return None,
                (Some(_), deadline) => match (free_at, deadline) {
                    (Some(free_at), Some(deadline)) => Some(free_at.min(deadline)),
                    (Some(free_at), None) => Some(free_at),
                    (None, deadline) => deadline,
                },
            };
            match until {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until.into(), notified).await;
                }
                None => notified.await,
            }
            if !self.is_valid() {
                return None;
            }
        }
    }

    /// Waits until no run of the scope is in progress.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the runs in progress, then gives the scope up in the store.
    pub(super) async fn give_up(&self) {
        {
            let jobs = lock(&self.jobs);
            self.closing.store(true, Ordering::Release);
            // Jobs waiting for their slot stop waiting.
            jobs.values().for_each(|slot| slot.freed.notify_waiters());
        }
        self.idle().await;
        self.lost.signal();
        self.stop.notify_one();
        let keeper = lock(&self.keeper).take();
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
    }
}

/// A job's run on the owner; frees its slot when dropped.
pub(super) struct SlotGuard {
    ownership: Arc<Ownership>,
    name: Arc<str>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let freed = {
            let mut jobs = lock(&self.ownership.jobs);
            jobs.get_mut(&self.name).map(|slot| {
                slot.busy = false;
                slot.freed.clone()
            })
        };
        if let Some(freed) = freed {
            freed.notify_waiters();
        }
        if self.ownership.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ownership.idle.notify_waiters();
        }
    }
}

/// Signals the loss when the keeper ends in any way (its runtime shut down
/// included), so no run starts on an ownership nobody renews.
struct LoseOnDrop(Arc<Ownership>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        self.0.lost.signal();
        REGISTRY.forget(&self.0);
    }
}

/// Renews the scope's lease until it is lost or given up.
pub(super) async fn keep_scope(
    ownership: Arc<Ownership>,
    mut guard: LockGuard,
    settings: ScopeSettings,
) {
    let _lose_on_drop = LoseOnDrop(ownership.clone());
    let renew_deadline = settings.renew_deadline();
    let given_up = {
        let keep = keep_lease(
            &mut guard,
            renew_deadline,
            settings.retry_period(),
            |valid_until| *lock(&ownership.valid_until) = valid_until,
        );
        let mut keep = pin!(keep);
        let mut stop = pin!(ownership.stop.notified());
        poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            keep.as_mut().poll(cx).map(|()| false)
        })
        .await
    };
    ownership.lost.signal();
    // No run starts any more; the lease keeps other replicas out until the
    // runs in progress were dropped or have ended, or it ends anyway.
    let lease_ends = guard.lease_until();
    let ended = tokio::time::timeout_at(lease_ends.into(), ownership.idle())
        .await
        .is_err();
    if ended {
        tracing::warn!(scope = %ownership.scope, term = ownership.term, "scope lease ended while its runs went on");
    }
    if given_up {
        match guard.unlock().await {
            Ok(()) => {
                tracing::info!(scope = %ownership.scope, term = ownership.term, "scope given up")
            }
            Err(err) => {
                tracing::warn!(scope = %ownership.scope, error = %err, "giving the scope up failed; its lease ends by itself");
            }
        }
    } else {
        // Dropped: a lease still held is given back in the background.
        tracing::warn!(scope = %ownership.scope, term = ownership.term, "scope ownership lost");
    }
}

impl fmt::Debug for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ownership")
            .field("scope", &self.scope)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}
