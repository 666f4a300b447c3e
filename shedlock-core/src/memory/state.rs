//! What an in-memory store holds: each name's holders, waiters and
//! capacity, and the run histories of its locks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::admin::{LockHolder, LockState};
use crate::{LockConfiguration, LockMode, RUN_HISTORY_LEN, RunRecord};

/// A map with a fast hasher: every lock cycle looks names and holders up.
pub(super) type FastMap<K, V> = hashbrown::HashMap<K, V>;

#[derive(Default)]
pub(super) struct State {
    pub(super) locks: FastMap<Arc<str>, Entry>,
    pub(super) last_token: u64,
    /// The size past which idle entries are swept out, so per-resource
    /// names do not pile up.
    pub(super) sweep_locks_at: usize,
    /// The last runs of each lock, the newest first (kept past the lock's
    /// entry, which is swept when idle).
    pub(super) runs: FastMap<Arc<str>, VecDeque<RunRecord>>,
}

impl State {
    pub(super) fn record_run(&mut self, name: &Arc<str>, run: RunRecord) {
        if self.runs.len() >= MAX_HISTORIES && !self.runs.contains_key(name) {
            self.forget_oldest_histories();
        }
        let runs = self.runs.entry(name.clone()).or_default();
        runs.push_front(run);
        runs.truncate(RUN_HISTORY_LEN);
    }

    /// Keeps the histories of the half of the names that ran last: with
    /// per-resource names, histories would otherwise pile up without end.
    /// Half at a time, so this costs O(log n) per new name on average.
    fn forget_oldest_histories(&mut self) {
        let mut last_runs: Vec<SystemTime> = self
            .runs
            .values()
            .filter_map(|runs| runs.front().map(|run| run.finished_at))
            .collect();
        let keep_from = last_runs.len() / 2;
        let (_, cutoff, _) = last_runs.select_nth_unstable(keep_from);
        let cutoff = *cutoff;
        self.runs
            .retain(|_, runs| runs.front().is_some_and(|run| run.finished_at > cutoff));
    }
}

/// The most lock names whose run history memory keeps; past it, the names
/// that ran longest ago lose theirs.
const MAX_HISTORIES: usize = 4096;

/// The smallest map that is swept; after a sweep the threshold doubles from
/// what is left, so sweeping costs O(1) per insertion on average.
const SWEEP_FLOOR: usize = 1024;

/// Everything about one lock name.
#[derive(Default)]
pub(super) struct Entry {
    /// Holders by acquisition number (= fencing token). Ended leases stay
    /// until the next look at the entry removes them.
    pub(super) holders: FastMap<u64, Held>,
    /// Exclusive waiters' ids and when their places in the queue lapse.
    pub(super) waiters: HashMap<String, Instant>,
    /// The operator's capacity, if set.
    pub(super) capacity: Option<u32>,
    /// The capacity to go back to when a pause ends.
    pub(super) resume_to: Option<u32>,
    /// The last tick claimed (ms since 1970); it outlives the leases.
    pub(super) last_tick: Option<i64>,
}

pub(super) struct Held {
    pub(super) expires_at: Instant,
    pub(super) mode: LockMode,
    pub(super) locked_at: SystemTime,
    pub(super) locked_by: Arc<str>,
    /// When the lease was taken or last extended.
    pub(super) renewed_at: Instant,
    /// How many times it was extended.
    pub(super) renewals: u64,
}

/// Why an attempt failed.
pub(super) enum Refusal {
    Paused,
    /// Held; when the earliest holder's lease ends.
    Held(Option<Instant>),
}

impl Entry {
    /// Drops ended leases and lapsed queue places.
    pub(super) fn forget_ended(&mut self, now: Instant) {
        self.holders.retain(|_, held| held.expires_at > now);
        self.waiters.retain(|_, until| *until > now);
    }

    pub(super) fn is_idle(&self, now: Instant) -> bool {
        self.capacity.is_none()
            && self.last_tick.is_none()
            && self.holders.values().all(|held| held.expires_at <= now)
            && self.waiters.values().all(|until| *until <= now)
    }

    /// Whether `config` may take the lock now. Call after `forget_ended`.
    pub(super) fn admits(
        &self,
        config: &LockConfiguration,
        waiter: Option<&str>,
    ) -> Result<(), Refusal> {
        let capacity = self.capacity.or(config.capacity());
        if capacity == Some(0) {
            return Err(Refusal::Paused);
        }
        let earliest_end = || self.holders.values().map(|held| held.expires_at).min();
        match config.mode() {
            LockMode::Exclusive => {
                if !self.holders.is_empty() {
                    return Err(Refusal::Held(earliest_end()));
                }
            }
            LockMode::Shared { permits } => {
                if self.holders.values().any(|h| h.mode == LockMode::Exclusive) {
                    return Err(Refusal::Held(earliest_end()));
                }
                // An exclusive waiter goes first; it wakes us when it is done.
                if self.waiters.keys().any(|id| Some(id.as_str()) != waiter) {
                    return Err(Refusal::Held(None));
                }
                let taken: u64 = self
                    .holders
                    .values()
                    .map(|held| u64::from(held.mode.permits().unwrap_or(1)))
                    .sum();
                if let Some(capacity) = capacity
                    && taken + u64::from(permits) > u64::from(capacity)
                {
                    return Err(Refusal::Held(earliest_end()));
                }
            }
        }
        Ok(())
    }

    pub(super) fn state(&self, name: &str, now: Instant) -> LockState {
        let mut holders: Vec<(u64, LockHolder)> = self
            .holders
            .iter()
            .filter(|(_, held)| held.expires_at > now)
            .map(|(token, held)| {
                let holder = LockHolder {
                    locked_by: held.locked_by.to_string(),
                    locked_at: Some(held.locked_at),
                    lease_left: Some(held.expires_at - now),
                    mode: held.mode,
                    fencing_token: Some(*token),
                    // `now` was read before the state's mutex was taken.
                    renewed_ago: Some(now.saturating_duration_since(held.renewed_at)),
                    renewals: Some(held.renewals),
                };
                (*token, holder)
            })
            .collect();
        holders.sort_by_key(|(token, _)| *token);
        LockState {
            name: name.to_owned(),
            holders: holders.into_iter().map(|(_, holder)| holder).collect(),
            capacity: self.capacity,
            paused: self.capacity == Some(0),
            exclusive_waiters: u32::try_from(self.waiters.values().filter(|t| **t > now).count())
                .unwrap_or(u32::MAX),
        }
    }
}

impl State {
    /// The live lease `acquisition` of `name`.
    pub(super) fn owned(
        &mut self,
        name: &str,
        acquisition: u64,
        now: Instant,
    ) -> Option<&mut Held> {
        self.locks
            .get_mut(name)?
            .holders
            .get_mut(&acquisition)
            .filter(|held| held.expires_at > now)
    }

    pub(super) fn entry(&mut self, name: &str, now: Instant) -> &mut Entry {
        entry(&mut self.locks, &mut self.sweep_locks_at, name, now)
    }
}

/// The entry of `name` in `locks` (a field of [`State`], so callers can use
/// the other fields while they hold the entry).
pub(super) fn entry<'a>(
    locks: &'a mut FastMap<Arc<str>, Entry>,
    sweep_locks_at: &mut usize,
    name: &str,
    now: Instant,
) -> &'a mut Entry {
    // One lookup by `&str`; the key is made only for a new name.
    if locks.len() >= (*sweep_locks_at).max(SWEEP_FLOOR) && !locks.contains_key(name) {
        locks.retain(|_, entry| !entry.is_idle(now));
        *sweep_locks_at = 2 * locks.len();
    }
    locks.entry_ref(name).or_default()
}

/// The state's mutex is never held across a panic point that leaves it
/// inconsistent, so a poisoned lock is still safe to use.
pub(super) fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{InMemoryLockProvider, LockAdmin};

    #[tokio::test]
    async fn run_histories_stay_bounded_across_names() {
        let provider = InMemoryLockProvider::new();
        let executor = crate::LockingTaskExecutor::new(provider.clone());
        let names = MAX_HISTORIES * 2 + 10;
        for name in 0..names {
            let config = LockConfiguration::new(
                format!("resource-{name}"),
                Duration::from_secs(10),
                Duration::ZERO,
            )
            .unwrap_or_else(|err| panic!("{err}")); // allow-panic: unit test
            let ran = executor.execute(&config, async {}).await;
            assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
        }
        let kept = lock_state(&provider.state).runs.len();
        assert!(
            kept <= MAX_HISTORIES,
            "{kept} histories kept of {names} names"
        );
        let last = provider
            .run_history(&format!("resource-{}", names - 1))
            .await
            .unwrap_or_else(|err| panic!("{err}")); // allow-panic: unit test
        assert_eq!(last.len(), 1, "the latest name's run was kept");
    }
}
