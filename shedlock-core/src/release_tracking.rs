//! Locks a task leaves to be given back in the background (a run cancelled
//! mid-way, a guard dropped), given back on tasks its runner can wait for.

use std::future::Future;
use std::sync::Arc;

use crate::BoxFuture;

/// Starts a release on a Tokio runtime: see [`track_releases`].
type SpawnRelease = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

tokio::task_local! {
    static SPAWN_RELEASE: SpawnRelease;
}

/// Runs `future` so that the locks it leaves to be given back in the
/// background are given back on tasks `spawn` starts: those of runs under a
/// lock cancelled mid-way (their futures dropped; their runs are recorded
/// as cancelled) and of guards dropped without `unlock`. Whoever keeps track
/// of what `spawn` starts (tokio-util's `TaskTracker`, for instance) can wait
/// until those locks are given back before its runtime goes: a runtime
/// dropped first never sends them, and they stay held until
/// `lock_at_most_for`. `shedlock::cron` runs its jobs so, and its stop waits
/// for them.
///
/// `spawn` is called on a Tokio runtime and must spawn the release there.
/// Leases an acquisition may have taken after its caller left (an answer
/// lost in transit) are still looked for on the runtime, untracked: finding
/// nothing, that goes on until the lease would have ended.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use shedlock_core::{InMemoryLockProvider, LockConfiguration, LockingTaskExecutor, track_releases};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let executor = LockingTaskExecutor::new(InMemoryLockProvider::new());
/// let config = LockConfiguration::new("report", Duration::from_secs(60), Duration::ZERO)?;
/// let releases = Arc::new(Mutex::new(Vec::new()));
/// let spawned = releases.clone();
/// let run = track_releases(
///     move |release| {
///         if let Ok(mut spawned) = spawned.lock() {
///             spawned.push(tokio::spawn(release));
///         }
///     },
///     executor.execute(&config, std::future::pending::<()>()),
/// );
/// // Cancelled mid-run: its lock is given back on a task in `releases`.
/// let _ = tokio::time::timeout(Duration::from_millis(10), run).await;
/// let spawned = std::mem::take(&mut *releases.lock().map_err(|err| err.to_string())?);
/// assert_eq!(spawned.len(), 1);
/// for release in spawned {
///     release.await?;
/// }
/// assert_eq!(executor.execute(&config, async { 42 }).await?, Some(42));
/// # Ok(()) }
/// ```
pub fn track_releases<F: Future>(
    spawn: impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static,
    future: F,
) -> impl Future<Output = F::Output> {
    SPAWN_RELEASE.scope(Arc::new(spawn), future)
}

/// Starts `release` in the background: by the spawner of an enclosing
/// [`track_releases`], else on the current runtime. Without a runtime it is
/// dropped, and `false` returned.
pub(crate) fn spawn_release(release: impl Future<Output = ()> + Send + 'static) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    match SPAWN_RELEASE.try_with(Arc::clone) {
        Ok(spawn) => spawn(Box::pin(release)),
        Err(_) => drop(runtime.spawn(release)),
    }
    true
}
