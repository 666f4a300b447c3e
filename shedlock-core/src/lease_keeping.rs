//! Keeping a lease held between runs (leader leases, job scopes): renewals
//! timed from the guard's lease, and the signal that it was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::LockGuard;

/// Until when a holder of `guard`'s lease may act on it: `renew_deadline`
/// after the instant the lease was last requested (client-go's rule), which
/// leaves `lease - renew_deadline` before the store's lease can end. Counted
/// from the guard's lease, which is counted from when its request was sent,
/// never from when an answer arrived.
pub(crate) fn act_until(guard: &LockGuard, renew_deadline: Duration) -> Instant {
    let spare = guard.lease_length().saturating_sub(renew_deadline);
    guard
        .lease_until()
        .checked_sub(spare)
        .unwrap_or_else(Instant::now)
}

/// Renews `guard`'s lease (to its last length) every `retry_period`;
/// returns when renewals failed until [`act_until`] passed, or the lease was
/// found ended. `renewed` hears the new [`act_until`] of each renewal that
/// succeeded. Shared by leader leases and job scopes.
pub(crate) async fn keep_lease(
    guard: &mut LockGuard,
    renew_deadline: Duration,
    retry_period: Duration,
    mut renewed: impl FnMut(Instant),
) {
    let lease = guard.lease_length();
    loop {
        let deadline = act_until(guard, renew_deadline);
        let next = (Instant::now() + retry_period).min(deadline);
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= deadline {
            break;
        }
        let renewal =
            tokio::time::timeout_at(deadline.into(), guard.extend(lease, Duration::ZERO)).await;
        match renewal {
            Ok(Ok(true)) => renewed(act_until(guard, renew_deadline)),
            Ok(Ok(false)) => break, // the lease ended: someone else may hold it
            Ok(Err(err)) => {
                tracing::warn!(lock = %guard.name(), error = %err, "lease renewal failed; trying again");
            }
            Err(_) => {} // the deadline passed while it was out
        }
    }
}

/// Set once a kept lease is lost (or given up); wakes whoever waits.
#[derive(Debug, Default)]
pub(crate) struct LostSignal {
    set: AtomicBool,
    notify: Notify,
}

impl LostSignal {
    pub(crate) fn signal(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
