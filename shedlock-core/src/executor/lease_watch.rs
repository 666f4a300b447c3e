//! Watching a held lease while its task runs: keep-alive extensions, the
//! loss marked, and the task cancelled on it when asked.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::context::ActiveLock;
use crate::metrics;

/// How soon keep-alive retries an extension that failed on a store error.
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(100);

/// Runs `task` beside `watcher`, which returns once the lease is lost (and
/// marked so); `None` when it was, and `cancel` asks the task to be dropped.
/// `cancel` `None`: nothing watches (the watcher is never polled). A panic
/// in `task` is caught (`Some(Err(panic))`), so the lock is given back
/// before it resumes. The task is polled where it lies: a copy would take
/// its size again in this future, for each level of nested locked calls.
pub(super) async fn run_watched<F: Future>(
    name: &str,
    cancel: Option<bool>,
    mut task: Pin<&mut F>,
    watcher: impl Future<Output = ()>,
) -> Option<Result<F::Output, Box<dyn Any + Send>>> {
    let mut watcher = pin!(watcher);
    let mut watching = cancel.is_some();
    let cancel = cancel.unwrap_or(false);
    poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Some(Ok(output))),
            Err(panic) => return Poll::Ready(Some(Err(panic))),
            Ok(Poll::Pending) => {}
        }
        if watching && watcher.as_mut().poll(cx).is_ready() {
            watching = false;
            if cancel {
                tracing::warn!(lock = %name, "cancelling the job: its lease was lost");
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// Keeps the lease alive (when asked) and returns once it is lost: an
/// extension finds it ended, the store stays unreachable until its end, or
/// the job's own `extend_active_lock` found it lost.
pub(super) async fn watch_lease(active: &ActiveLock, keep_alive: bool) {
    let mut next_extension = None;
    loop {
        if active.is_lost() {
            return; // marked by the job's extend_active_lock
        }
        let (lease_until, period) = match active.guard.lock().await.as_ref() {
            Some(guard) => (guard.lease_until(), guard.lease_length() / 3),
            None => return,
        };
        let next = *next_extension.get_or_insert_with(|| Instant::now() + period);
        let wake = if keep_alive {
            next.min(lease_until)
        } else {
            lease_until
        };
        // The job extended the lease or lost it: look again from its new state.
        if tokio::time::timeout_at(wake.into(), active.changed.notified())
            .await
            .is_ok()
        {
            next_extension = None;
            continue;
        }
        let mut guard = active.guard.lock().await;
        let Some(guard) = guard.as_mut() else { return };
        let lease_until = guard.lease_until();
        if Instant::now() >= lease_until {
            // Not extended in time (by keep-alive or the job): the store may
            // have given the lock to someone else.
            break;
        }
        if !keep_alive || Instant::now() < next {
            continue;
        }
        // Bounded by the lease end: a store that never answers must not hide the loss.
        match tokio::time::timeout_at(lease_until.into(), guard.renew()).await {
            Ok(Ok(true)) => next_extension = Some(Instant::now() + guard.lease_length() / 3),
            Ok(Ok(false)) | Err(_) => {
                metrics::extension_failed(&active.label);
                break;
            }
            Ok(Err(_)) => {
                metrics::extension_failed(&active.label);
                next_extension = Some(Instant::now() + KEEP_ALIVE_RETRY.min(period));
            }
        }
    }
    active.mark_lost();
}
