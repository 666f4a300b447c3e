//! `LockAdmin` for the in-memory store: state, capacity, pause and resume,
//! force-release, and run histories, each one step under the state's mutex.

use std::time::Instant;

use super::InMemoryLockProvider;
use super::state::{Entry, lock_state};
use crate::admin::{LockAdmin, LockState};
use crate::provider::BoxFuture;
use crate::{LockError, RunRecord};

impl LockAdmin for InMemoryLockProvider {
    fn lock_state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<LockState, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let state = lock_state(&self.state);
            Ok(match state.locks.get(name) {
                Some(entry) => entry.state(name, now),
                None => Entry::default().state(name, now),
            })
        })
    }

    fn list_locks(&self) -> BoxFuture<'_, Result<Vec<LockState>, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let state = lock_state(&self.state);
            let mut locks: Vec<LockState> = state
                .locks
                .iter()
                .filter(|(name, entry)| !entry.is_idle(now) || state.runs.contains_key(*name))
                .map(|(name, entry)| entry.state(name, now))
                .collect();
            // Locks with runs and no entry left (swept when idle).
            let empty = Entry::default();
            for name in state.runs.keys() {
                if !state.locks.contains_key(name) {
                    locks.push(empty.state(name, now));
                }
            }
            locks.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(locks)
        })
    }

    fn set_capacity<'a>(
        &'a self,
        name: &'a str,
        capacity: u32,
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            crate::validate_capacity(capacity)?;
            self.change(name, |entry| {
                if capacity == 0 {
                    // Like a pause: remember what to resume to.
                    if entry.capacity != Some(0) {
                        entry.resume_to = entry.capacity;
                    }
                } else {
                    entry.resume_to = None;
                }
                entry.capacity = Some(capacity);
            });
            Ok(())
        })
    }

    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            self.change(name, |entry| {
                if entry.capacity != Some(0) {
                    entry.resume_to = entry.capacity;
                    entry.capacity = Some(0);
                }
            });
            Ok(())
        })
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            self.change(name, |entry| {
                if entry.capacity == Some(0) {
                    entry.capacity = entry.resume_to.take();
                }
            });
            Ok(())
        })
    }

    fn force_release<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, LockError>> {
        Box::pin(async move {
            let released = self.change(name, |entry| {
                let released = entry.holders.len();
                entry.holders.clear();
                released
            });
            tracing::warn!(lock = %name, holders = released, "lock force-released");
            Ok(released)
        })
    }

    fn last_tick<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, LockError>> {
        Box::pin(async move {
            let state = lock_state(&self.state);
            let tick = state.locks.get(name).and_then(|entry| entry.last_tick);
            Ok(tick.map(crate::configuration::millis_tick))
        })
    }

    fn run_history<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, LockError>> {
        Box::pin(async move {
            let state = lock_state(&self.state);
            Ok(state
                .runs
                .get(name)
                .map(|runs| runs.iter().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn last_runs<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, LockError>> {
        Box::pin(async move {
            let state = lock_state(&self.state);
            Ok(names
                .iter()
                .map(|name| {
                    state
                        .runs
                        .get(name.as_str())
                        .and_then(|runs| runs.front().cloned())
                })
                .collect())
        })
    }
}
