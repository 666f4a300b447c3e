//! The scopes of every provider in this process: which replica owns which
//! scope, what a tick does about it, and the claims that ask the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::ownership::{JobSlots, Ownership, keep_scope, lock};
use super::{OwnedScope, SCOPE_LOCK_PREFIX, ScopeSettings};
use crate::lease_keeping::act_until;
use crate::{LockConfiguration, LockError, LockProvider};

/// The scopes of every provider in this process.
pub(super) static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

#[derive(Default)]
pub(super) struct Registry {
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
pub(super) struct ReplicaKey {
    store: Box<str>,
    identity: Box<str>,
}

impl ReplicaKey {
    pub(super) fn of<P: LockProvider + ?Sized>(provider: &P) -> ReplicaKey {
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
pub(super) enum Decision {
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

    pub(super) fn decide(
        &self,
        key: &ReplicaKey,
        scope: &Arc<str>,
        settings: &ScopeSettings,
    ) -> Decision {
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
    pub(super) fn forget(&self, ownership: &Ownership) {
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
    pub(super) fn close(&self) -> Vec<Arc<Ownership>> {
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

    pub(super) fn owned(&self) -> Vec<OwnedScope> {
        let state = self.lock();
        let mut owned: Vec<OwnedScope> = state
            .replicas
            .values()
            .flat_map(|replica| replica.scopes.values())
            .filter_map(|entry| match entry {
                Entry::Owned(ownership) if ownership.is_valid() => Some(OwnedScope {
                    scope: ownership.scope.to_string(),
                    term: ownership.term,
                }),
                _ => None,
            })
            .collect();
        owned.sort_by(|a, b| a.scope.cmp(&b.scope).then(a.term.cmp(&b.term)));
        owned
    }
}

/// The right, for one task, to ask the store for a scope. Dropped before it
/// settles (an error, a cancelled tick), it puts the scope back as it was.
pub(super) struct Claim {
    key: ReplicaKey,
    scope: Arc<str>,
    seen_held: bool,
    settled: bool,
}

impl Claim {
    pub(super) async fn attempt<P: LockProvider + ?Sized>(
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
