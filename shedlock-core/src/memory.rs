//! `InMemoryLockProvider`: locks in this process's memory, for the quickstart,
//! single-process services and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::provider::{BoxFuture, Lease, ReleaseNotifier, ReleaseWatch};
use crate::{LockConfiguration, LockError, LockGuard, LockProvider};

/// Locks kept in this process's memory, timed by its monotonic clock.
///
/// Clones share the same locks, so one provider can be handed to several
/// simulated replicas. It keeps every guarantee of a shedlock provider
/// (leases end, ownership-checked release and extension, fencing tokens),
/// but only within one process: use a Redis or SQL provider across replicas.
#[derive(Clone)]
pub struct InMemoryLockProvider {
    state: Arc<Mutex<State>>,
    /// Names a provider (and its clones) hold, apart from other providers'.
    scope: Arc<str>,
}

impl Default for InMemoryLockProvider {
    fn default() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let scope = format!("memory:{:p}", Arc::as_ptr(&state)).into();
        InMemoryLockProvider { state, scope }
    }
}

#[derive(Default)]
struct State {
    locks: HashMap<Arc<str>, Held>,
    last_token: u64,
    /// Release counters of names that somebody waits for.
    watchers: HashMap<Arc<str>, ReleaseNotifier>,
    /// Sizes past which ended leases and unwatched counters are swept out,
    /// so per-resource names do not pile up.
    sweep_locks_at: usize,
    sweep_watchers_at: usize,
}

/// The smallest map that is swept; after a sweep the threshold doubles from
/// what is left, so sweeping costs O(1) per insertion on average.
const SWEEP_FLOOR: usize = 1024;

struct Held {
    acquisition: u64,
    expires_at: Instant,
}

impl State {
    /// The lease of `name` if it has not ended.
    fn live(&mut self, name: &str, now: Instant) -> Option<&mut Held> {
        self.locks
            .get_mut(name)
            .filter(|held| held.expires_at > now)
    }

    /// Wakes the waiters of `name`, and forgets the counter once nobody watches.
    fn notify_release(&mut self, name: &str) {
        if let Some(releases) = self.watchers.get(name) {
            if releases.is_watched() {
                releases.notify_released();
            } else {
                self.watchers.remove(name);
            }
        }
    }

    /// The lease of `name` if it has not ended and is `acquisition`'s.
    fn owned(&mut self, name: &str, acquisition: u64, now: Instant) -> Option<&mut Held> {
        self.live(name, now)
            .filter(|held| held.acquisition == acquisition)
    }
}

impl InMemoryLockProvider {
    /// A provider with no locks held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a lease of `name` is held right now.
    pub fn is_locked(&self, name: &str) -> bool {
        lock_state(&self.state).live(name, Instant::now()).is_some()
    }
}

impl std::fmt::Debug for InMemoryLockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLockProvider")
            .finish_non_exhaustive()
    }
}

/// The state's mutex is never held across a panic point that leaves it
/// inconsistent, so a poisoned lock is still safe to use.
fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LockProvider for InMemoryLockProvider {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = lock_state(&self.state);
            if let Some(held) = state.live(config.name(), now) {
                let ends_at = held.expires_at;
                if let Some(releases) = state.watchers.get(config.name()) {
                    releases.note_lease_end(Some(ends_at));
                }
                return Ok(None);
            }
            state.last_token += 1;
            let token = state.last_token;
            if state.locks.len() >= state.sweep_locks_at.max(SWEEP_FLOOR) {
                state.locks.retain(|_, held| held.expires_at > now);
                state.sweep_locks_at = 2 * state.locks.len();
            }
            state.locks.insert(
                config.shared_name().clone(),
                Held {
                    acquisition: token,
                    expires_at: now + config.lock_at_most_for(),
                },
            );
            drop(state);
            let lease = MemoryLease {
                state: self.state.clone(),
                name: config.shared_name().clone(),
                acquisition: token,
            };
            Ok(Some(LockGuard::new(config, token, now, lease)))
        })
    }

    fn watch_releases<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ReleaseWatch> {
        Box::pin(async move {
            let mut state = lock_state(&self.state);
            if state.watchers.len() >= state.sweep_watchers_at.max(SWEEP_FLOOR) {
                state.watchers.retain(|_, releases| releases.is_watched());
                state.sweep_watchers_at = 2 * state.watchers.len();
            }
            state.watchers.entry(Arc::from(name)).or_default().watch()
        })
    }

    fn scope(&self) -> &str {
        &self.scope
    }
}

struct MemoryLease {
    state: Arc<Mutex<State>>,
    name: Arc<str>,
    acquisition: u64,
}

impl Lease for MemoryLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = lock_state(&self.state);
            Ok(match state.owned(&self.name, self.acquisition, now) {
                Some(held) => {
                    held.expires_at = now + lock_at_most_for;
                    true
                }
                None => false,
            })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = lock_state(&self.state);
            let Some(held) = state.owned(&self.name, self.acquisition, now) else {
                return Ok(false);
            };
            if keep_for.is_zero() {
                state.locks.remove(&*self.name);
                state.notify_release(&self.name);
            } else {
                held.expires_at = held.expires_at.min(now + keep_for);
            }
            Ok(true)
        })
    }
}
