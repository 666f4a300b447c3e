//! Leader leases: one process leads under a name and keeps its lease renewed
//! until it stops or loses it (client-go's leader election, on any provider).

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use crate::identity::default_locked_by;
use crate::lease_keeping::{LostSignal, keep_lease};
use crate::{LockAdmin, LockConfiguration, LockError, LockGuard, LockProvider, Waiter};

/// Campaigns for and keeps a leader lease under one name.
///
/// ```
/// use std::time::Duration;
/// use shedlock_core::{InMemoryLockProvider, LeaderElection};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shedlock_core::LockError> {
/// let election = LeaderElection::new(InMemoryLockProvider::new(), "scheduler", Duration::from_secs(15))?;
/// let term = election
///     .run(|leadership| async move {
///         // Lead until done; `leadership.lost()` resolves if the lease is lost,
///         // and this future is dropped before another process can take over.
///         leadership.term()
///     })
///     .await?;
/// assert!(term > 0);
/// # Ok(()) }
/// ```
///
/// Timing follows client-go: the leader renews its lease every
/// `retry_period`; when renewals have failed for `renew_deadline` since the
/// last one that succeeded, it stops leading (its closure is dropped) while
/// the lease, `lease_duration` from that renewal, still keeps others out.
/// Candidates try every `retry_period`. `lease_duration > renew_deadline >
/// 1.2 × retry_period` is required; the defaults are 2/3 and 2/15 of the
/// lease duration (10 s and 2 s for 15 s, as client-go).
pub struct LeaderElection<P> {
    provider: P,
    config: LockConfiguration,
    renew_deadline: Duration,
    retry_period: Duration,
    identity: Arc<str>,
    leading: Arc<AtomicBool>,
}

impl<P: LockProvider> LeaderElection<P> {
    /// An election for `name` on `provider`, whose leader's lease lasts
    /// `lease_duration` from each renewal.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] for a name or lease duration that
    /// [`LockConfiguration::new`] refuses.
    pub fn new(
        provider: P,
        name: impl Into<Arc<str>>,
        lease_duration: Duration,
    ) -> Result<Self, LockError> {
        let config = LockConfiguration::new(name, lease_duration, Duration::ZERO)?;
        let renew_deadline = lease_duration * 2 / 3;
        let election = LeaderElection {
            provider,
            config,
            renew_deadline,
            retry_period: renew_deadline / 5,
            identity: default_locked_by().into(),
            leading: Arc::new(AtomicBool::new(false)),
        };
        election.validated()
    }

    /// How long the leader keeps trying to renew before it gives up leading.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] unless `lease_duration >
    /// renew_deadline > 1.2 × retry_period`.
    pub fn with_renew_deadline(mut self, renew_deadline: Duration) -> Result<Self, LockError> {
        self.renew_deadline = renew_deadline;
        self.validated()
    }

    /// How often the leader renews and candidates try.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidConfiguration`] unless `lease_duration >
    /// renew_deadline > 1.2 × retry_period`.
    pub fn with_retry_period(mut self, retry_period: Duration) -> Result<Self, LockError> {
        self.retry_period = retry_period;
        self.validated()
    }

    /// Who this process is, as [`Leadership::identity`] reports it (default:
    /// host name and process id).
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into().into();
        self
    }

    fn validated(self) -> Result<Self, LockError> {
        let lease = self.config.lock_at_most_for();
        let valid = lease > self.renew_deadline
            && self.renew_deadline.as_secs_f64() > 1.2 * self.retry_period.as_secs_f64()
            && !self.retry_period.is_zero();
        if !valid {
            return Err(LockError::InvalidConfiguration(format!(
                "leader election '{}' needs lease_duration > renew_deadline > 1.2 × \
                 retry_period > 0, got {lease:?}, {:?} and {:?}",
                self.config.name(),
                self.renew_deadline,
                self.retry_period
            )));
        }
        Ok(self)
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        self.config.name()
    }

    /// Whether this process leads now (inside [`run`](Self::run)).
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Waits until this process leads, then runs `lead` with its
    /// [`Leadership`]. Returns what `lead` returns, after giving leadership up
    /// at once; or `Err(LockError::LeaseLost)` when leadership was lost first,
    /// in which case `lead`'s future was dropped before the lease could end
    /// and another process take over. Dropping this future gives leadership
    /// up in the background.
    ///
    /// # Errors
    ///
    /// [`LockError::LeaseLost`] as above; configuration errors of the
    /// provider (store errors while campaigning are retried).
    pub async fn run<F, Fut, T>(&self, lead: F) -> Result<T, LockError>
    where
        F: FnOnce(Leadership) -> Fut,
        Fut: Future<Output = T>,
    {
        let (mut guard, term) = self.campaign().await?;
        let leadership = Leadership {
            name: self.config.shared_name().clone(),
            identity: self.identity.clone(),
            term,
            lost: Arc::new(LostSignal::default()),
        };
        let lost = leadership.lost.clone();
        self.leading.store(true, Ordering::Release);
        tracing::info!(election = %self.name(), term, "leading");
        let outcome = {
            let mut keep = pin!(self.keep(&mut guard, &lost));
            let mut lead = pin!(lead(leadership));
            // Whichever ends first: the lease (the closure's future is
            // dropped here, before the lease ends; polled first, so a lease
            // already past its deadline never starts the closure), or the
            // closure (step down).
            poll_fn(|cx| {
                if keep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                lead.as_mut().poll(cx).map(Some)
            })
            .await
        };
        self.leading.store(false, Ordering::Release);
        match outcome {
            Some(out) => {
                if let Err(err) = guard.unlock().await {
                    tracing::warn!(election = %self.name(), error = %err, "stepped down; the lease ends at its own end");
                } else {
                    tracing::info!(election = %self.name(), term, "stepped down");
                }
                Ok(out)
            }
            None => {
                tracing::warn!(election = %self.name(), term, "leadership lost");
                drop(guard);
                Err(LockError::LeaseLost {
                    name: self.name().to_owned(),
                })
            }
        }
    }

    /// Tries every `retry_period`, and at once when the provider announces
    /// the lease's release (every built-in provider: from any process on Redis
    /// and PostgreSQL, from this one elsewhere), until this process holds the
    /// lease and has its term.
    async fn campaign(&self) -> Result<(LockGuard, u64), LockError> {
        // A waiting candidate: its attempts ask the holder's release to be
        // announced, and its place lasts until its next attempt.
        let waiter = Waiter::new(self.retry_period * 2);
        loop {
            // Watched before the attempt, so a release right after it is seen.
            let mut released = self.provider.watch_releases(self.name()).await;
            match self.provider.try_lock_waiting(&self.config, &waiter).await {
                Ok(Some(guard)) => match guard.fencing_token().await {
                    Ok(term) => return Ok((guard, term)),
                    Err(err) => {
                        tracing::warn!(election = %self.name(), error = %err, "won the lease but not its term; campaigning again");
                    }
                },
                Ok(None) => {}
                Err(err) if err.is_store_failure() => {
                    tracing::warn!(election = %self.name(), error = %err, "campaign failed; trying again");
                }
                Err(err) => return Err(err),
            }
            let _ = tokio::time::timeout(self.retry_period, released.released()).await;
        }
    }

    /// Renews the lease until it is lost, then signals `lost`.
    async fn keep(&self, guard: &mut LockGuard, lost: &LostSignal) {
        keep_lease(guard, self.renew_deadline, self.retry_period, |_| {}).await;
        lost.signal();
    }
}

impl<P: LockProvider + LockAdmin + Clone> LeaderElection<P> {
    /// Watches who leads this election, this process or another (client-go's
    /// `OnNewLeader`): the store is read every `retry_period` by a task that
    /// stops when the receiver is dropped. `None`: nobody leads. Needs a
    /// provider that can read a lock's state ([`LockAdmin`]: every built-in
    /// one, memory, Redis, PostgreSQL, MySQL/MariaDB and SQLite).
    pub async fn observe(&self) -> watch::Receiver<Option<Leader>> {
        let (leaders, observed) = watch::channel(None);
        let (provider, name, period) = (
            self.provider.clone(),
            self.config.shared_name().clone(),
            self.retry_period,
        );
        tokio::spawn(async move {
            while !leaders.is_closed() {
                match provider.lock_state(&name).await {
                    Ok(state) => {
                        let leader = state.holders.first().map(|holder| Leader {
                            identity: holder.locked_by.clone(),
                            term: holder.fencing_token,
                        });
                        leaders.send_if_modified(|current| {
                            let changed = *current != leader;
                            *current = leader;
                            changed
                        });
                    }
                    Err(err) => {
                        tracing::debug!(election = %name, error = %err, "cannot read who leads; trying again");
                    }
                }
                tokio::time::sleep(period).await;
            }
        });
        observed
    }
}

/// Who leads an election, as the store shows it to [`LeaderElection::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The leader's `locked_by`: host name and process id by default.
    pub identity: String,
    /// Its term, where the store keeps it per holder.
    pub term: Option<u64>,
}

impl<P> fmt::Debug for LeaderElection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElection")
            .field("name", &self.config.name())
            .field("lease_duration", &self.config.lock_at_most_for())
            .field("renew_deadline", &self.renew_deadline)
            .field("retry_period", &self.retry_period)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// This process's leadership, given to the closure of [`LeaderElection::run`].
#[derive(Clone, Debug)]
pub struct Leadership {
    name: Arc<str>,
    identity: Arc<str>,
    term: u64,
    lost: Arc<LostSignal>,
}

impl Leadership {
    /// The term: greater than every earlier leader's under this name (the
    /// lease's fencing token), so a store downstream can refuse an old leader.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who leads: this process's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Resolves when leadership is lost (the closure is then dropped at once).
    pub async fn lost(&self) {
        self.lost.wait().await;
    }

    /// Whether leadership has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_set()
    }
}
