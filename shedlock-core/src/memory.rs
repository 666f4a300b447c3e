//! `InMemoryLockProvider`: locks in this process's memory, for the quickstart,
//! single-process services and tests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::admin::{LockAdmin, LockHolder, LockState};
use crate::provider::{BoxFuture, Lease, ReleaseWatch, Waiter};
use crate::{
    FinishedRun, GrantedLease, LockConfiguration, LockError, LockGuard, LockMode, LockProvider,
    RUN_HISTORY_LEN, ReleaseNotifiers, RunOutcome, RunRecord,
};

/// A map with a fast hasher: every lock cycle looks names and holders up.
type FastMap<K, V> = hashbrown::HashMap<K, V>;

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

#[derive(Default)]
struct State {
    locks: FastMap<Arc<str>, Entry>,
    last_token: u64,
    /// The size past which idle entries are swept out, so per-resource
    /// names do not pile up.
    sweep_locks_at: usize,
    /// The last runs of each lock, the newest first (kept past the lock's
    /// entry, which is swept when idle).
    runs: FastMap<Arc<str>, VecDeque<RunRecord>>,
}

impl State {
    fn record_run(&mut self, name: &Arc<str>, run: RunRecord) {
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
struct Entry {
    /// Holders by acquisition number (= fencing token). Ended leases stay
    /// until the next look at the entry removes them.
    holders: FastMap<u64, Held>,
    /// Exclusive waiters' ids and when their places in the queue lapse.
    waiters: HashMap<String, Instant>,
    /// The operator's capacity, if set.
    capacity: Option<u32>,
    /// The capacity to go back to when a pause ends.
    resume_to: Option<u32>,
}

struct Held {
    expires_at: Instant,
    mode: LockMode,
    locked_at: SystemTime,
    locked_by: Arc<str>,
    /// When the lease was taken or last extended.
    renewed_at: Instant,
    /// How many times it was extended.
    renewals: u64,
}

/// Why an attempt failed.
enum Refusal {
    Paused,
    /// Held; when the earliest holder's lease ends.
    Held(Option<Instant>),
}

impl Entry {
    /// Drops ended leases and lapsed queue places.
    fn forget_ended(&mut self, now: Instant) {
        self.holders.retain(|_, held| held.expires_at > now);
        self.waiters.retain(|_, until| *until > now);
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.capacity.is_none()
            && self.holders.values().all(|held| held.expires_at <= now)
            && self.waiters.values().all(|until| *until <= now)
    }

    /// Whether `config` may take the lock now. Call after `forget_ended`.
    fn admits(&self, config: &LockConfiguration, waiter: Option<&str>) -> Result<(), Refusal> {
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

    fn state(&self, name: &str, now: Instant) -> LockState {
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
    fn owned(&mut self, name: &str, acquisition: u64, now: Instant) -> Option<&mut Held> {
        self.locks
            .get_mut(name)?
            .holders
            .get_mut(&acquisition)
            .filter(|held| held.expires_at > now)
    }

    fn entry(&mut self, name: &str, now: Instant) -> &mut Entry {
        entry(&mut self.locks, &mut self.sweep_locks_at, name, now)
    }
}

/// The entry of `name` in `locks` (a field of [`State`], so callers can use
/// the other fields while they hold the entry).
fn entry<'a>(
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

impl InMemoryLockProvider {
    /// A provider with no locks held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets who this process is in [`LockAdmin::lock_state`] (default: host
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
        drop(guard);
        let lease = MemoryLease {
            state: self.state.clone(),
            releases: self.releases.clone(),
            name: config.shared_name().clone(),
            acquisition: token,
            locked_by: self.locked_by.clone(),
        };
        Ok(Some(GrantedLease::locked_at(
            config,
            Some(token),
            now,
            locked_at,
            lease,
        )))
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

/// The state's mutex is never held across a panic point that leaves it
/// inconsistent, so a poisoned lock is still safe to use.
fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            crate::admin::validate_capacity(capacity)?;
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

struct MemoryLease {
    state: Arc<Mutex<State>>,
    releases: Arc<ReleaseNotifiers>,
    name: Arc<str>,
    acquisition: u64,
    locked_by: Arc<str>,
}

impl Lease for MemoryLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = lock_state(&self.state);
            Ok(match state.owned(&self.name, self.acquisition, now) {
                Some(held) => {
                    held.expires_at = now + lock_at_most_for;
                    held.renewed_at = now;
                    held.renewals = held.renewals.saturating_add(1);
                    true
                }
                None => false,
            })
        })
    }

    fn release(&self, keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move { Ok(self.release_recording(keep_for, None)) })
    }

    fn release_after_run<'a>(
        &'a self,
        keep_for: Duration,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move { Ok(self.release_recording(keep_for, Some(run))) })
    }

    fn record_lost_run<'a>(&'a self, run: &'a FinishedRun) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let record = RunRecord::new(run, &*self.locked_by, SystemTime::now());
            lock_state(&self.state).record_run(&self.name, record);
            Ok(())
        })
    }
}

impl MemoryLease {
    /// Releases the lease and records `run`, in one step; a lease that has
    /// ended records the run as lost.
    fn release_recording(&self, keep_for: Duration, run: Option<&FinishedRun>) -> bool {
        let now = Instant::now();
        let mut state = lock_state(&self.state);
        let Some(held) = state.owned(&self.name, self.acquisition, now) else {
            if let Some(run) = run {
                let lost = FinishedRun {
                    outcome: RunOutcome::LeaseLost,
                    ..*run
                };
                let record = RunRecord::new(&lost, &*self.locked_by, SystemTime::now());
                state.record_run(&self.name, record);
            }
            return false;
        };
        if keep_for.is_zero() {
            if let Some(entry) = state.locks.get_mut(&*self.name) {
                entry.holders.remove(&self.acquisition);
            }
        } else {
            held.expires_at = held.expires_at.min(now + keep_for);
        }
        if let Some(run) = run {
            let record = RunRecord::new(run, &*self.locked_by, SystemTime::now());
            state.record_run(&self.name, record);
        }
        drop(state);
        if keep_for.is_zero() {
            self.releases.notify_released(&self.name);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
            .unwrap_or_else(|err| panic!("{err}"));
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
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(last.len(), 1, "the latest name's run was kept");
    }
}
