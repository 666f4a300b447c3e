//! `InMemoryLockProvider`: locks in this process's memory, for the quickstart,
//! single-process services and tests.

mod admin;
mod lease;
mod state;

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::provider::{BoxFuture, ReleaseWatch, Waiter};
use crate::{
    GrantedLease, LockConfiguration, LockError, LockGuard, LockMode, LockProvider, ReleaseNotifiers,
};
use lease::MemoryLease;
use state::{Entry, Held, Refusal, State, entry, lock_state};

/// Locks kept in this process's memory, timed by its monotonic clock.
///
/// Clones share the same locks, so one provider can be handed to several
/// simulated replicas. It keeps every guarantee of a shedlock provider
/// (leases end, ownership-checked release and extension, fencing tokens,
/// shared and counted locks, capacity and pause), but only within one
/// process: use a Redis or SQL provider across replicas.
#[derive(Clone)]
pub struct InMemoryLockProvider {
    state: Arc<Mutex<State>>,
    /// Wakes the waiters of a name when it is released.
    releases: Arc<ReleaseNotifiers>,
    /// Names a provider (and its clones) hold, apart from other providers'.
    scope: Arc<str>,
    locked_by: Arc<str>,
}

impl Default for InMemoryLockProvider {
    fn default() -> Self {
        // A number never reused in the process (an address would be, once a
        // store is dropped), so job scopes and reentrancy never mistake a new
        // store for an old one.
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let store = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = Arc::new(Mutex::new(State::default()));
        let scope = format!("memory:{store}").into();
        InMemoryLockProvider {
            state,
            releases: Arc::default(),
            scope,
            locked_by: crate::identity::default_locked_by().into(),
        }
    }
}

impl InMemoryLockProvider {
    /// A provider with no locks held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets who this process is in
    /// [`LockAdmin::lock_state`](crate::LockAdmin::lock_state) (default: host
    /// name and process id).
    pub fn with_locked_by(mut self, locked_by: impl Into<String>) -> Self {
        self.locked_by = locked_by.into().into();
        self
    }

    /// Whether a lease of `name` is held right now.
    pub fn is_locked(&self, name: &str) -> bool {
        let now = Instant::now();
        lock_state(&self.state)
            .locks
            .get(name)
            .is_some_and(|entry| entry.holders.values().any(|held| held.expires_at > now))
    }

    fn acquire(
        &self,
        config: &LockConfiguration,
        waiter: Option<&Waiter>,
    ) -> Result<Option<GrantedLease>, LockError> {
        config.check_tick()?;
        let now = Instant::now();
        let mut guard = lock_state(&self.state);
        let state = &mut *guard;
        let entry = entry(
            &mut state.locks,
            &mut state.sweep_locks_at,
            config.name(),
            now,
        );
        entry.forget_ended(now);
        let previous_tick = entry.last_tick;
        if let (Some(tick), Some(claimed)) = (config.tick_millis(), previous_tick)
            && claimed >= tick
        {
            tracing::debug!(lock = %config.name(), "tick claimed already; skipping");
            return Ok(None);
        }
        if let Err(refusal) = entry.admits(config, waiter.map(Waiter::id)) {
            if let (Some(waiter), LockMode::Exclusive) = (waiter, config.mode()) {
                let place_ends = now
                    .checked_add(waiter.hold_place_for())
                    .unwrap_or(now + crate::MAX_LOCK_AT_MOST_FOR);
                entry.waiters.insert(waiter.id().to_owned(), place_ends);
            }
            let ends_at = match refusal {
                Refusal::Paused => {
                    tracing::debug!(lock = %config.name(), "lock paused (capacity 0)");
                    None
                }
                Refusal::Held(ends_at) => ends_at,
            };
            drop(guard);
            self.releases.note_lease_end(config.name(), ends_at);
            return Ok(None);
        }
        if let Some(waiter) = waiter {
            entry.waiters.remove(waiter.id());
        }
        state.last_token += 1;
        let token = state.last_token;
        let locked_at = SystemTime::now();
        let held = Held {
            expires_at: now + config.lock_at_most_for(),
            mode: config.mode(),
            locked_at,
            locked_by: self.locked_by.clone(),
            renewed_at: now,
            renewals: 0,
        };
        entry.holders.insert(token, held);
        if let Some(tick) = config.tick_millis() {
            entry.last_tick = Some(tick);
        }
        drop(guard);
        let lease = MemoryLease {
            state: self.state.clone(),
            releases: self.releases.clone(),
            name: config.shared_name().clone(),
            acquisition: token,
            locked_by: self.locked_by.clone(),
        };
        let granted = GrantedLease::locked_at(config, Some(token), now, locked_at, Arc::new(lease));
        Ok(Some(granted.after_tick(previous_tick)))
    }

    /// Applies `change` to the entry of `name`, then wakes its waiters.
    fn change<T>(&self, name: &str, change: impl FnOnce(&mut Entry) -> T) -> T {
        let now = Instant::now();
        let mut state = lock_state(&self.state);
        let entry = state.entry(name, now);
        entry.forget_ended(now);
        let result = change(entry);
        drop(state);
        self.releases.notify_released(name);
        result
    }
}

impl std::fmt::Debug for InMemoryLockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLockProvider")
            .finish_non_exhaustive()
    }
}

/// An acquisition's answer, through the one rule of a lease's clock.
async fn vouched(
    granted: Result<Option<GrantedLease>, LockError>,
) -> Result<Option<LockGuard>, LockError> {
    match granted? {
        Some(granted) => Ok(granted.vouch().await),
        None => Ok(None),
    }
}

impl LockProvider for InMemoryLockProvider {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move { vouched(self.acquire(config, None)).await })
    }

    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move { vouched(self.acquire(config, Some(waiter))).await })
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        let watch = self.releases.watch(name);
        Box::pin(async move { watch })
    }

    fn scope(&self) -> &str {
        &self.scope
    }

    fn replica_identity(&self) -> &str {
        &self.locked_by
    }
}
