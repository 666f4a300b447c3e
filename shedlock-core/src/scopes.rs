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

mod ownership;
mod registry;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::lease_keeping::LostSignal;
use crate::{ExecutionOptions, LockConfiguration, LockError, LockInfo, LockProvider};
use ownership::{Ownership, SlotGuard};
use registry::{Decision, REGISTRY, ReplicaKey};

/// The prefix of a scope's lock name: the scope `tenant-7` is the lock
/// `scope:tenant-7`, as `shedlock list` shows it.
pub const SCOPE_LOCK_PREFIX: &str = "scope:";

/// A job scope this process owns, as
/// [`SchedulerLock::owned_scopes`](crate::SchedulerLock::owned_scopes) lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnedScope {
    /// The scope, as the job's `scope = ".."` renders it; its lock is named
    /// [`SCOPE_LOCK_PREFIX`] followed by it.
    pub scope: String,
    /// The ownership's term: the fencing token of the scope's lease, which
    /// rises with every new owner.
    pub term: u64,
}

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

/// A scoped job's scope, and its timing.
pub(crate) struct Scoped {
    pub(crate) settings: ScopeSettings,
    pub(crate) scope: Arc<str>,
}

/// A place for the job `config` names in its scope, if this replica owns
/// the scope (claiming it if it may) and the job's local slot is free (or
/// frees within the wait): what a tick of a scoped job runs on, on the owner
/// at once, elsewhere skipped (see the module's documentation). The run
/// itself is the executor's pipeline, on this place instead of a lease.
pub(crate) async fn take_place<P: LockProvider + ?Sized>(
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
pub(crate) fn owned_scopes() -> Vec<OwnedScope> {
    REGISTRY.owned()
}
