//! Job scopes: `#[scheduler_lock(name = "..", scope = "..")]`.
//!
//! A scope is owned by one replica at a time. Ownership is a leader lease
//! under the lock name `scope:<scope>`, taken at the scope's first tick on a
//! replica, renewed in the background between ticks, and kept until the
//! process gives it up ([`SchedulerLock::shutdown`](crate::SchedulerLock::shutdown))
//! or the lease ends (a crash, a store outage longer than the renew deadline,
//! `shedlock unlock --force`). Ticks on the owner run at once, without a round
//! trip; two runs of one job on the owner never overlap (a local slot per job
//! name, kept until `lock_at_least_for` has passed). Other replicas skip, and
//! ask the store again only once per sweep interval.
//!
//! Balance: a replica claims at most one *unclaimed* scope per sweep
//! interval, so scopes spread over replicas that start together. A scope it
//! saw held by another replica and then finds free (its owner shut down or
//! died) is taken over at that sweep without waiting its turn, so a dead
//! replica's scopes move within lease duration + sweep interval.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::executor::{Hold, run_held};
use crate::lease_keeping::{LostSignal, act_until, keep_lease};
use crate::metrics::LockLabel;
use crate::{ExecutionOptions, LockConfiguration, LockError, LockGuard, LockInfo, LockProvider};

/// The prefix of a scope's lock name: the scope `tenant-7` is the lock
/// `scope:tenant-7`, as `shedlock list` shows it.
pub const SCOPE_LOCK_PREFIX: &str = "scope:";

/// Timing of scope leases and sweeps, set on
/// [`SchedulerLockBuilder`](crate::SchedulerLockBuilder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScopeSettings {
    /// A scope's lease lasts this long from each renewal.
    pub(crate) lease_duration: Duration,
    /// How often a replica may claim an unclaimed scope, and how long it
    /// trusts "held elsewhere" before asking the store again.
    pub(crate) sweep_interval: Duration,
}

impl ScopeSettings {
    pub(crate) const DEFAULT: ScopeSettings = ScopeSettings {
        lease_duration: Duration::from_secs(30),
        sweep_interval: Duration::from_secs(5),
    };

    /// client-go's ratios, as [`LeaderElection`](crate::LeaderElection)'s defaults.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    fn retry_period(&self) -> Duration {
        self.renew_deadline() / 5
    }

    pub(crate) fn validate(&self) -> Result<(), LockError> {
        if self.lease_duration < Duration::from_millis(100) || self.sweep_interval.is_zero() {
            return Err(LockError::InvalidConfiguration(format!(
                "scope leases need a lease duration of at least 100ms and a sweep interval \
                 above zero, got {:?} and {:?}",
                self.lease_duration, self.sweep_interval
            )));
        }
        crate::configuration::validate_durations("<scope>", self.lease_duration, Duration::ZERO)
    }
}

/// The scopes of every provider in this process.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

#[derive(Default)]
struct Registry {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set by shutdown: no scope is claimed or run any more.
    closed: bool,
    replicas: HashMap<ReplicaKey, Replica>,
    /// Ownerships replaced in the registry whose keepers may still be giving
    /// their leases back: shutdown waits for them too.
    retiring: Vec<Arc<Ownership>>,
}

/// One replica of a store: the store's identity (its [`LockProvider::scope`])
/// and the replica's ([`LockProvider::replica_identity`], its `locked_by`).
/// Providers of one process with both the same are one replica, however many
/// objects it makes; clones given other `locked_by`s simulate several.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReplicaKey {
    store: Box<str>,
    identity: Box<str>,
}

impl ReplicaKey {
    fn of<P: LockProvider + ?Sized>(provider: &P) -> ReplicaKey {
        ReplicaKey {
            store: provider.scope().into(),
            identity: provider.replica_identity().into(),
        }
    }
}

#[derive(Default)]
struct Replica {
    scopes: HashMap<Arc<str>, Entry>,
    /// The local slots of each scope's jobs: they outlive an ownership, so
    /// a scope lost and taken again never starts a second run of a job
    /// whose first still runs, and keeps its `lock_at_least_for`.
    slots: HashMap<Arc<str>, Arc<JobSlots>>,
    /// When this replica last claimed an unclaimed scope.
    last_claim: Option<Instant>,
}

enum Entry {
    Owned(Arc<Ownership>),
    /// A task of this process is asking the store now.
    Claiming,
    /// Held by another replica when last asked: asked again after `retry_at`.
    Elsewhere {
        retry_at: Instant,
    },
}

/// What a tick of a scoped job does.
enum Decision {
    Run(Arc<Ownership>),
    Skip(&'static str),
    Claim(Claim),
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the maps half-changed
        // (every change is one insert or remove), so a poisoned lock is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn decide(&self, key: &ReplicaKey, scope: &Arc<str>, settings: &ScopeSettings) -> Decision {
        let mut state = self.lock();
        if state.closed {
            return Decision::Skip("the scheduler lock is shutting down");
        }
        let state = &mut *state;
        let replica = state.replicas.entry(key.clone()).or_default();
        let now = Instant::now();
        let seen_held = match replica.scopes.get(scope) {
            Some(Entry::Owned(ownership)) if ownership.is_valid() => {
                return Decision::Run(ownership.clone());
            }
            // Past its deadline, and not yet forgotten by its keeper: someone
            // may hold it now. Its keeper is stopped before the entry is
            // replaced (it gives the lease back once the runs have ended),
            // and shutdown waits for it.
            Some(Entry::Owned(ownership)) => {
                ownership.stop_keeping();
                state
                    .retiring
                    .retain(|retiring| !retiring.keeper_finished());
                state.retiring.push(ownership.clone());
                true
            }
            Some(Entry::Claiming) => {
                return Decision::Skip("another task of this process is claiming the scope");
            }
            Some(Entry::Elsewhere { retry_at }) if now < *retry_at => {
                return Decision::Skip("the scope is owned by another replica");
            }
            Some(Entry::Elsewhere { .. }) => true,
            None => false,
        };
        if !seen_held
            && replica
                .last_claim
                .is_some_and(|last| now < last + settings.sweep_interval)
        {
            return Decision::Skip("this replica claimed a scope this sweep interval");
        }
        replica.scopes.insert(scope.clone(), Entry::Claiming);
        Decision::Claim(Claim {
            key: key.clone(),
            scope: scope.clone(),
            seen_held,
            settled: false,
        })
    }

    /// Forgets `ownership` (its lease is gone): the scope is asked for again
    /// at the next tick, as a takeover.
    fn forget(&self, ownership: &Ownership) {
        let mut state = self.lock();
        if let Some(replica) = state.replicas.get_mut(&ownership.key)
            && let Some(Entry::Owned(current)) = replica.scopes.get(&ownership.scope)
            && std::ptr::eq(Arc::as_ptr(current), ownership)
        {
            replica.scopes.insert(
                ownership.scope.clone(),
                Entry::Elsewhere {
                    retry_at: Instant::now(),
                },
            );
        }
    }

    /// The job slots of `scope` on the replica `key`, made on first use.
    fn slots(&self, key: &ReplicaKey, scope: &Arc<str>) -> Arc<JobSlots> {
        let mut state = self.lock();
        let replica = state.replicas.entry(key.clone()).or_default();
        replica.slots.entry(scope.clone()).or_default().clone()
    }

    /// Closes the registry and hands out every ownership, to be given up.
    fn close(&self) -> Vec<Arc<Ownership>> {
        let mut state = self.lock();
        state.closed = true;
        let mut owned: Vec<Arc<Ownership>> = std::mem::take(&mut state.retiring);
        owned.extend(
            state
                .replicas
                .drain()
                .flat_map(|(_, replica)| replica.scopes.into_values())
                .filter_map(|entry| match entry {
                    Entry::Owned(ownership) => Some(ownership),
                    _ => None,
                }),
        );
        owned
    }

    fn owned(&self) -> Vec<(String, u64)> {
        let state = self.lock();
        let mut owned: Vec<(String, u64)> = state
            .replicas
            .values()
            .flat_map(|replica| replica.scopes.values())
            .filter_map(|entry| match entry {
                Entry::Owned(ownership) if ownership.is_valid() => {
                    Some((ownership.scope.to_string(), ownership.term))
                }
                _ => None,
            })
            .collect();
        owned.sort();
        owned
    }
}

/// The right, for one task, to ask the store for a scope. Dropped before it
/// settles (an error, a cancelled tick), it puts the scope back as it was.
struct Claim {
    key: ReplicaKey,
    scope: Arc<str>,
    seen_held: bool,
    settled: bool,
}

impl Claim {
    async fn attempt<P: LockProvider + ?Sized>(
        mut self,
        provider: &P,
        settings: ScopeSettings,
    ) -> Result<Option<Arc<Ownership>>, LockError> {
        let config = LockConfiguration::new(
            format!("{SCOPE_LOCK_PREFIX}{}", self.scope),
            settings.lease_duration,
            Duration::ZERO,
        )?;
        let slots = REGISTRY.slots(&self.key, &self.scope);
        let Some(guard) = provider.try_lock(&config).await? else {
            self.settle(Entry::Elsewhere {
                retry_at: Instant::now() + settings.sweep_interval,
            });
            tracing::debug!(scope = %self.scope, "scope owned by another replica");
            return Ok(None);
        };
        // From the guard's lease, counted from the acquisition's request: not
        // from the token's answer, one more round trip later on some stores.
        let valid_until = act_until(&guard, settings.renew_deadline());
        // Dropped on an error: released in the background.
        let term = guard.fencing_token().await?;
        let ownership = Arc::new(Ownership {
            key: self.key.clone(),
            scope: self.scope.clone(),
            term,
            lost: Arc::default(),
            valid_until: Mutex::new(valid_until),
            jobs: slots,
            closing: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            stop: Notify::new(),
            keeper: Mutex::new(None),
        });
        let keeper = tokio::spawn(keep_scope(ownership.clone(), guard, settings));
        *lock(&ownership.keeper) = Some(keeper);
        self.settle(Entry::Owned(ownership.clone()));
        tracing::info!(scope = %self.scope, term, taken_over = self.seen_held, "scope owned");
        Ok(Some(ownership))
    }

    fn settle(&mut self, entry: Entry) {
        self.settled = true;
        let mut state = REGISTRY.lock();
        if state.closed {
            if let Entry::Owned(ownership) = entry {
                // Shut down while claiming: give it straight back.
                ownership.lost.signal();
                ownership.stop.notify_one();
            }
            return;
        }
        let replica = state.replicas.entry(self.key.clone()).or_default();
        if matches!(entry, Entry::Owned(_)) && !self.seen_held {
            // A claim of an unclaimed scope: the next waits a sweep interval.
            replica.last_claim = Some(Instant::now());
        }
        replica.scopes.insert(self.scope.clone(), entry);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut state = REGISTRY.lock();
        if let Some(replica) = state.replicas.get_mut(&self.key) {
            if self.seen_held {
                let retry_at = Instant::now();
                replica
                    .scopes
                    .insert(self.scope.clone(), Entry::Elsewhere { retry_at });
            } else {
                replica.scopes.remove(&self.scope);
            }
        }
    }
}

/// This replica's ownership of one scope.
struct Ownership {
    key: ReplicaKey,
    scope: Arc<str>,
    term: u64,
    /// Shared with the scope's runs, which see a loss at once.
    lost: Arc<LostSignal>,
    /// The last successful renewal's request time + the renew deadline (see
    /// `act_until`): past it the keeper gives up, so no run starts after it
    /// whatever the keeper's state.
    valid_until: Mutex<Instant>,
    /// Local slots of the scope's jobs, shared with the scope's earlier and
    /// later ownerships on this replica.
    jobs: Arc<JobSlots>,
    /// Set (under `jobs`) when the scope is being given up: no run starts.
    closing: AtomicBool,
    /// Runs in progress, and a wake-up for shutdown when they reach zero.
    running: AtomicUsize,
    idle: Notify,
    /// Asks the keeper to give the scope up.
    stop: Notify,
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The local slots of one scope's jobs on one replica, by job name.
type JobSlots = Mutex<HashMap<Arc<str>, JobSlot>>;

/// One job's local slot on the owner.
struct JobSlot {
    busy: bool,
    /// `lock_at_least_for` after the last run started.
    free_at: Instant,
    freed: Arc<Notify>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ownership {
    /// Whether the keeper has ended (or never started).
    fn keeper_finished(&self) -> bool {
        lock(&self.keeper)
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Stops the keeper: no run starts any more, and the lease is given back
    /// once the runs in progress have ended (or the lease has anyway).
    fn stop_keeping(&self) {
        self.lost.signal();
        self.stop.notify_one();
    }

    fn is_valid(&self) -> bool {
        !self.lost.is_set() && Instant::now() < *lock(&self.valid_until)
    }

    /// Takes the job's local slot: at once, or waiting up to `wait_for`.
    async fn enter(
        self: &Arc<Self>,
        name: &Arc<str>,
        wait_for: Option<Duration>,
        lock_at_least_for: Duration,
    ) -> Option<SlotGuard> {
        let deadline = wait_for.and_then(|wait_for| Instant::now().checked_add(wait_for));
        loop {
            let freed: Arc<Notify>;
            let notified;
            let free_at = {
                let mut jobs = lock(&self.jobs);
                if self.closing.load(Ordering::Acquire) || self.lost.is_set() {
                    return None;
                }
                let slot = jobs.entry(name.clone()).or_insert_with(|| JobSlot {
                    busy: false,
                    free_at: Instant::now(),
                    freed: Arc::new(Notify::new()),
                });
                let now = Instant::now();
                if !slot.busy && now >= slot.free_at {
                    slot.busy = true;
                    slot.free_at = now + lock_at_least_for;
                    self.running.fetch_add(1, Ordering::AcqRel);
                    return Some(SlotGuard {
                        ownership: self.clone(),
                        name: name.clone(),
                    });
                }
                // Registered while the slot is still locked: a run that
                // frees it right after still wakes this waiter.
                freed = slot.freed.clone();
                notified = freed.notified();
                (!slot.busy).then_some(slot.free_at)
            };
            let until = match (wait_for, deadline) {
                (None, _) => return None,
                (Some(_), Some(deadline)) if Instant::now() >= deadline => return None,
                (Some(_), deadline) => match (free_at, deadline) {
                    (Some(free_at), Some(deadline)) => Some(free_at.min(deadline)),
                    (Some(free_at), None) => Some(free_at),
                    (None, deadline) => deadline,
                },
            };
            match until {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until.into(), notified).await;
                }
                None => notified.await,
            }
            if !self.is_valid() {
                return None;
            }
        }
    }

    /// Waits until no run of the scope is in progress.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits for the runs in progress, then gives the scope up in the store.
    async fn give_up(&self) {
        {
            let jobs = lock(&self.jobs);
            self.closing.store(true, Ordering::Release);
            // Jobs waiting for their slot stop waiting.
            jobs.values().for_each(|slot| slot.freed.notify_waiters());
        }
        self.idle().await;
        self.lost.signal();
        self.stop.notify_one();
        let keeper = lock(&self.keeper).take();
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
    }
}

/// A job's run on the owner; frees its slot when dropped.
struct SlotGuard {
    ownership: Arc<Ownership>,
    name: Arc<str>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let freed = {
            let mut jobs = lock(&self.ownership.jobs);
            jobs.get_mut(&self.name).map(|slot| {
                slot.busy = false;
                slot.freed.clone()
            })
        };
        if let Some(freed) = freed {
            freed.notify_waiters();
        }
        if self.ownership.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ownership.idle.notify_waiters();
        }
    }
}

/// Signals the loss when the keeper ends in any way (its runtime shut down
/// included), so no run starts on an ownership nobody renews.
struct LoseOnDrop(Arc<Ownership>);

impl Drop for LoseOnDrop {
    fn drop(&mut self) {
        self.0.lost.signal();
        REGISTRY.forget(&self.0);
    }
}

/// Renews the scope's lease until it is lost or given up.
async fn keep_scope(ownership: Arc<Ownership>, mut guard: LockGuard, settings: ScopeSettings) {
    let _lose_on_drop = LoseOnDrop(ownership.clone());
    let renew_deadline = settings.renew_deadline();
    let given_up = {
        let keep = keep_lease(
            &mut guard,
            renew_deadline,
            settings.retry_period(),
            |valid_until| *lock(&ownership.valid_until) = valid_until,
        );
        let mut keep = pin!(keep);
        let mut stop = pin!(ownership.stop.notified());
        poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            keep.as_mut().poll(cx).map(|()| false)
        })
        .await
    };
    ownership.lost.signal();
    // No run starts any more; the lease keeps other replicas out until the
    // runs in progress were dropped or have ended, or it ends anyway.
    let lease_ends = guard.lease_until();
    let ended = tokio::time::timeout_at(lease_ends.into(), ownership.idle())
        .await
        .is_err();
    if ended {
        tracing::warn!(scope = %ownership.scope, term = ownership.term, "scope lease ended while its runs went on");
    }
    if given_up {
        match guard.unlock().await {
            Ok(()) => {
                tracing::info!(scope = %ownership.scope, term = ownership.term, "scope given up")
            }
            Err(err) => {
                tracing::warn!(scope = %ownership.scope, error = %err, "giving the scope up failed; its lease ends by itself");
            }
        }
    } else {
        // Dropped: a lease still held is given back in the background.
        tracing::warn!(scope = %ownership.scope, term = ownership.term, "scope ownership lost");
    }
}

/// A scoped job's scope, its timing, and its metrics label.
pub(crate) struct Scoped {
    pub(crate) settings: ScopeSettings,
    pub(crate) scope: Arc<str>,
    pub(crate) label: LockLabel,
}

/// Runs a tick of the job `config` names in its scope: on the owner at once,
/// elsewhere skipped. See the module's documentation; the run itself is the
/// executor's pipeline, on a place in the scope instead of a lease.
pub(crate) fn run_scoped<P: LockProvider + ?Sized, F: Future>(
    provider: &P,
    scoped: Scoped,
    config: &LockConfiguration,
    options: ExecutionOptions,
    task: F,
) -> impl Future<Output = Result<Option<F::Output>, LockError>> {
    let Scoped {
        settings,
        scope,
        label,
    } = scoped;
    let take = async move {
        let run = take_place(provider, settings, scope, config, options).await?;
        Ok(run.map(Hold::Scope))
    };
    run_held(provider.scope(), config, label, options, take, task)
}

/// A place for the job `config` names in its scope, if this replica owns
/// the scope (claiming it if it may) and the job's local slot is free (or
/// frees within the wait).
async fn take_place<P: LockProvider + ?Sized>(
    provider: &P,
    settings: ScopeSettings,
    scope: Arc<str>,
    config: &LockConfiguration,
    options: ExecutionOptions,
) -> Result<Option<ScopeRun>, LockError> {
    let name = config.name();
    if scope.is_empty() {
        return Err(LockError::InvalidConfiguration(format!(
            "job '{name}' has an empty scope: give every scope a name"
        )));
    }
    let key = ReplicaKey::of(provider);
    let ownership = match REGISTRY.decide(&key, &scope, &settings) {
        Decision::Run(ownership) => ownership,
        Decision::Skip(why) => {
            tracing::debug!(lock = %name, scope = %scope, why, "skipping");
            return Ok(None);
        }
        Decision::Claim(claim) => match claim.attempt(provider, settings).await? {
            Some(ownership) => ownership,
            None => return Ok(None),
        },
    };
    let Some(slot) = ownership
        .enter(
            config.shared_name(),
            options.waits_for(),
            config.lock_at_least_for(),
        )
        .await
    else {
        tracing::debug!(lock = %name, scope = %scope, "the job runs on this replica already; skipping");
        return Ok(None);
    };
    if !ownership.is_valid() {
        tracing::debug!(lock = %name, scope = %scope, "scope lost before the run; skipping");
        return Ok(None);
    }
    Ok(Some(ScopeRun {
        ownership,
        _slot: slot,
    }))
}

/// A run's place in a scope this replica owns: the job's local slot, left
/// when this is dropped.
pub(crate) struct ScopeRun {
    ownership: Arc<Ownership>,
    _slot: SlotGuard,
}

impl ScopeRun {
    pub(crate) fn scope(&self) -> &str {
        &self.ownership.scope
    }

    /// The scope's term: the run's fencing token.
    pub(crate) fn term(&self) -> u64 {
        self.ownership.term
    }

    /// What the job reads about its lock.
    pub(crate) fn info(&self, config: &LockConfiguration) -> LockInfo {
        LockInfo::given(config.shared_name().clone(), self.term(), SystemTime::now())
    }

    /// Set when the scope is lost (or given up).
    pub(crate) fn lost_signal(&self) -> Arc<LostSignal> {
        self.ownership.lost.clone()
    }
}

/// Gives up every scope this process owns (see [`SchedulerLock::shutdown`](crate::SchedulerLock::shutdown)).
pub(crate) async fn shutdown() {
    let owned = REGISTRY.close();
    let mut giving_up = tokio::task::JoinSet::new();
    for ownership in owned {
        giving_up.spawn(async move { ownership.give_up().await });
    }
    while giving_up.join_next().await.is_some() {}
}

/// The scopes this process owns now, with their terms.
pub(crate) fn owned_scopes() -> Vec<(String, u64)> {
    REGISTRY.owned()
}

impl fmt::Debug for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ownership")
            .field("scope", &self.scope)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}
