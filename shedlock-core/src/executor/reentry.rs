//! Nested calls on a lock the task holds already: they run on that hold,
//! without a second acquisition, when it covers what they ask.

use std::future::Future;

use crate::context::ActiveLock;
use crate::metrics::{Attempt, LockLabel};
use crate::{LockConfiguration, LockError, LockMode};

/// A call on a lock the task holds already: runs on that hold (see
/// [`reenter`]); its outcome is its own, the outer run's stays as it was.
pub(super) async fn run_nested<F: Future>(
    active: &ActiveLock,
    config: &LockConfiguration,
    label: &LockLabel,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    let name = config.name();
    if let Err(err) = reenter(active, config).await {
        tracing::warn!(lock = %name, error = %err, "nested call on a held lock refused; the task did not run");
        Attempt::start(label).failed(&err);
        return Err(err);
    }
    tracing::trace!(lock = %name, "lock already held by this task; running reentrantly");
    let noted = active.noted_outcome();
    let output = task.await;
    active.note(noted);
    Ok(Some(output))
}

/// Lets a nested call on a lock the task holds run on that hold, without a
/// second acquisition: only when the hold covers what the call asks (a second
/// acquisition would wait on the task's own hold), and with the held lease
/// made to cover the call's own `lock_at_most_for` and `lock_at_least_for`.
pub(crate) async fn reenter(
    active: &ActiveLock,
    config: &LockConfiguration,
) -> Result<(), LockError> {
    let lease_lost = || LockError::LeaseLost {
        name: config.name().to_owned(),
    };
    if !covers(active.mode, config.mode()) {
        return Err(LockError::ReentrantUpgrade {
            name: config.name().to_owned(),
            held: active.mode,
            asked: config.mode(),
        });
    }
    if active.is_lost() {
        return Err(lease_lost());
    }
    if active.is_kept_elsewhere() {
        // A scoped run: the scope's lease is renewed in the background.
        return Ok(());
    }
    let mut guard = active.guard.lock().await;
    let Some(guard) = guard.as_mut() else {
        return Err(lease_lost()); // already taken back for release
    };
    let lease_until = guard.lease_until();
    if !guard
        .cover(config.lock_at_most_for(), config.lock_at_least_for())
        .await?
    {
        active.mark_lost();
        return Err(lease_lost());
    }
    if guard.lease_until() != lease_until {
        // The lease watcher times its next check from the longer lease.
        active.changed.notify_one();
    }
    Ok(())
}

/// Whether a lock held in mode `held` covers a nested call asking `asked`:
/// exclusive covers every use; shared permits cover as many permits or fewer.
fn covers(held: LockMode, asked: LockMode) -> bool {
    match (held, asked) {
        (LockMode::Exclusive, _) => true,
        (LockMode::Shared { .. }, LockMode::Exclusive) => false,
        (LockMode::Shared { permits: held }, LockMode::Shared { permits: asked }) => asked <= held,
    }
}
