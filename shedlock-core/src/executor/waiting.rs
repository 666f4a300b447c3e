//! Taking a lock as a call's options say: once, retrying, or waiting for
//! its release.

use std::time::{Duration, Instant};

use super::{ExecutionOptions, WhenHeld};
use crate::provider::Waiter;
use crate::{LockConfiguration, LockError, LockGuard, LockProvider};

/// The first pause of a waiter that gets no release notification; it doubles
/// up to [`MAX_POLL_INTERVAL`]. Notifications wake waiters sooner.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between two attempts of a waiter.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a waiting exclusive holder keeps its place in the queue after an
/// attempt (it tries again at least every [`MAX_POLL_INTERVAL`]), so a waiter
/// that dies blocks shared holders this long at most.
const HOLD_PLACE_FOR: Duration = Duration::from_secs(2);

/// Takes the lock as `options` say: once, with retries, or waiting.
pub(super) async fn acquire<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    options: &ExecutionOptions,
) -> Result<Option<LockGuard>, LockError> {
    match options.when_held {
        WhenHeld::Wait(wait_for) => lock_waiting(provider, config, wait_for).await,
        WhenHeld::Retry {
            retries,
            retry_wait,
        } => lock_retrying(provider, config, retries, retry_wait).await,
        WhenHeld::Skip => provider.try_lock(config).await,
    }
}

/// Tries until the lock is free or `wait_for` has passed. Wakes on the
/// provider's release notification; the backoff only covers a lost one.
pub(super) async fn lock_waiting<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    wait_for: Duration,
) -> Result<Option<LockGuard>, LockError> {
    // No deadline when `wait_for` is too long to add to an instant: wait on.
    let deadline = Instant::now().checked_add(wait_for);
    // Watch before the first attempt: a release right after it still wakes us.
    let mut releases = provider.watch_releases(config.name()).await;
    let mut pause = FIRST_POLL_INTERVAL;
    let mut waiter = Waiter::new(HOLD_PLACE_FOR);
    loop {
        let left = deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        // A place in the queue never outlives the wait.
        waiter.set_hold_place_for(HOLD_PLACE_FOR.min(left).max(Duration::from_millis(1)));
        if let Some(guard) = provider.try_lock_waiting(config, &waiter).await? {
            return Ok(Some(guard));
        }
        let now = Instant::now();
        let left = deadline.map_or(MAX_POLL_INTERVAL, |deadline| {
            deadline.saturating_duration_since(now)
        });
        if left.is_zero() {
            tracing::debug!(lock = %config.name(), ?wait_for, "gave up waiting for lock");
            return Ok(None);
        }
        tracing::trace!(lock = %config.name(), "lock held elsewhere; waiting");
        let _ = tokio::time::timeout(pause.min(left), releases.released()).await;
        pause = (pause * 2).min(MAX_POLL_INTERVAL);
    }
}

pub(super) async fn lock_retrying<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
    retries: u32,
    retry_wait: Duration,
) -> Result<Option<LockGuard>, LockError> {
    // Between tries an exclusive caller keeps its place, as a waiter does.
    let mut waiter = Waiter::new(retry_wait.saturating_add(HOLD_PLACE_FOR));
    for retry in 0..=retries {
        if retry > 0 {
            tokio::time::sleep(retry_wait).await;
        }
        if retry == retries {
            // The last try: no place to keep for later.
            waiter.set_hold_place_for(Duration::from_millis(1));
        }
        let attempt = if retries == 0 {
            provider.try_lock(config).await?
        } else {
            provider.try_lock_waiting(config, &waiter).await?
        };
        if let Some(guard) = attempt {
            return Ok(Some(guard));
        }
    }
    Ok(None)
}
