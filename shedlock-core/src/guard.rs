//! `LockGuard`: a held lease, and `LockInfo`: what a job can read about its lock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::background_release::BackgroundRelease;
use crate::configuration::validate_durations;
use crate::provider::Lease;
use crate::{FinishedRun, LockConfiguration, LockError, RunOutcome};

/// What a job can read about the lock it holds (see [`current_lock`](crate::current_lock)).
#[derive(Clone)]
pub struct LockInfo {
    name: Arc<str>,
    fencing_token: FencingToken,
    locked_at: SystemTime,
}

/// A lease's fencing token: handed out with the lease, or issued by the
/// store on first request. Shared by a guard and every [`LockInfo`] of it,
/// so the store issues it once.
#[derive(Clone)]
struct FencingToken(Arc<TokenState>);

struct TokenState {
    issued: tokio::sync::OnceCell<u64>,
    /// The lease that issues the token on request; `None`: it came with the lease.
    issuer: Option<Arc<dyn Lease>>,
}

impl FencingToken {
    fn given(token: u64) -> Self {
        FencingToken(Arc::new(TokenState {
            issued: tokio::sync::OnceCell::new_with(Some(token)),
            issuer: None,
        }))
    }

    fn on_request(issuer: Arc<dyn Lease>) -> Self {
        FencingToken(Arc::new(TokenState {
            issued: tokio::sync::OnceCell::new(),
            issuer: Some(issuer),
        }))
    }

    async fn get(&self, name: &str) -> Result<u64, LockError> {
        let state = &self.0;
        let token = state
            .issued
            .get_or_try_init(|| async {
                let issuer = state.issuer.as_ref().ok_or_else(|| lease_lost(name))?;
                match issuer.issue_fencing_token().await? {
                    Some(token) => {
                        // Inside a locked job, its span shows the token from now on.
                        tracing::Span::current().record("fencing_token", token);
                        tracing::debug!(lock = %name, fencing_token = token, "fencing token issued");
                        Ok(token)
                    }
                    None => {
                        tracing::warn!(lock = %name, "fencing token refused: the lease has ended");
                        Err(lease_lost(name))
                    }
                }
            })
            .await?;
        Ok(*token)
    }

    fn issued(&self) -> Option<u64> {
        self.0.issued.get().copied()
    }
}

fn lease_lost(name: &str) -> LockError {
    LockError::LeaseLost {
        name: name.to_owned(),
    }
}

impl LockInfo {
    /// A lock whose token is known: a job scope's run, whose token is the
    /// scope's term.
    pub(crate) fn given(name: Arc<str>, fencing_token: u64, locked_at: SystemTime) -> LockInfo {
        LockInfo {
            name,
            fencing_token: FencingToken::given(fencing_token),
            locked_at,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of this acquisition: strictly greater than every
    /// earlier token of the same name. Pass it to stores downstream so they
    /// can refuse writes from a holder whose lease has ended.
    ///
    /// Some providers (Redis, for a plain exclusive lock) issue the token on
    /// the first request, in a step that checks the lease is still held, so
    /// jobs that never ask pay nothing for it; later requests give the same
    /// token at no cost.
    ///
    /// # Errors
    ///
    /// [`LockError::LeaseLost`] when the token was not issued yet and the
    /// lease has ended; a store error when the store cannot be reached.
    pub async fn fencing_token(&self) -> Result<u64, LockError> {
        self.fencing_token.get(&self.name).await
    }

    /// The fencing token if it is known without asking the store.
    pub(crate) fn issued_fencing_token(&self) -> Option<u64> {
        self.fencing_token.issued()
    }

    /// When the lock was taken, by this process's wall clock. For display
    /// only: leases are timed by the store's clock or the monotonic clock.
    pub fn locked_at(&self) -> SystemTime {
        self.locked_at
    }
}

impl fmt::Debug for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockInfo")
            .field("name", &self.name)
            .field("fencing_token", &self.issued_fencing_token())
            .field("locked_at", &self.locked_at)
            .finish()
    }
}

/// A held lock.
///
/// Release it with [`unlock`](LockGuard::unlock), which honours
/// `lock_at_least_for`. A guard dropped without `unlock` (a cancelled or
/// panicking job) is released in the background on the current Tokio runtime;
/// without a runtime (or while it shuts down), the lease simply ends after
/// `lock_at_most_for`.
#[must_use = "a lock guard holds the lock until it is unlocked or dropped"]
pub struct LockGuard {
    info: LockInfo,
    /// The earliest instant at which `unlock` may free the lock
    /// (`lock_at_least_for`); `None` when it may at once.
    keep_until: Option<Instant>,
    /// An instant before which the lease certainly has not ended on the store.
    lease_until: Instant,
    /// The lease length last asked of the store, which keep-alive renews.
    lease_length: Duration,
    lease: Option<Arc<dyn Lease>>,
    /// The lease once an extension found it ended: kept only to record the
    /// run in the lock's history.
    ended: Option<Arc<dyn Lease>>,
    /// The tick this acquisition claimed (ms since 1970), if any.
    tick: Option<i64>,
    /// The tick claimed before this acquisition's (ms since 1970), when it claims one.
    previous_tick: Option<i64>,
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        self.info.name()
    }

    /// The fencing token: strictly greater than every earlier token of this
    /// name. See [`LockInfo::fencing_token`]: a provider may issue it on the
    /// first request, which then checks that the lease is still held.
    ///
    /// Where a store cannot keep a counter (ShedLock's SQL table without the
    /// `fencing_token` column), the provider documents what it returns instead.
    ///
    /// # Errors
    ///
    /// [`LockError::LeaseLost`] when the token was not issued yet and the
    /// lease has ended; a store error when the store cannot be reached.
    pub async fn fencing_token(&self) -> Result<u64, LockError> {
        self.info.fencing_token().await
    }

    /// The tick this acquisition claimed
    /// ([`LockConfiguration::for_tick`]), if it claimed one.
    pub fn tick(&self) -> Option<std::time::SystemTime> {
        self.tick.map(crate::configuration::millis_tick)
    }

    /// The tick the run before claimed, when this acquisition claimed one
    /// ([`LockConfiguration::for_tick`]); `None` when it claimed none or no
    /// tick of this name was claimed before. The ticks of a schedule between
    /// the two were missed: no replica ran them.
    pub fn previous_tick(&self) -> Option<std::time::SystemTime> {
        self.previous_tick.map(crate::configuration::millis_tick)
    }

    /// Records `missed` in the lock's history, while the lease is held.
    pub(crate) async fn record_missed(&self, missed: &crate::MissedTicks) -> Result<(), LockError> {
        match &self.lease {
            Some(lease) => lease.record_missed(missed).await,
            None => Ok(()),
        }
    }

    /// What a job can read about this lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// An instant before which the lease certainly has not ended, measured by
    /// this process's monotonic clock from just before the last acquisition or
    /// extension was sent.
    pub fn lease_until(&self) -> Instant {
        self.lease_until
    }

    /// Makes the lease end `lock_at_most_for` from now and keeps the lock at
    /// least `lock_at_least_for` from now, if this guard still holds it.
    ///
    /// `Ok(false)`: the lease had already ended (another holder may have the
    /// lock now); the store was not changed.
    pub async fn extend(
        &mut self,
        lock_at_most_for: Duration,
        lock_at_least_for: Duration,
    ) -> Result<bool, LockError> {
        validate_durations(self.name(), lock_at_most_for, lock_at_least_for)?;
        self.extend_lease(lock_at_most_for, Some(lock_at_least_for))
            .await
    }

    /// Keep-alive's extension: the lease length last asked for (by the
    /// configuration or the job's own `extend`) starts again from now; the
    /// lock is still kept only until its `lock_at_least_for` end.
    pub(crate) async fn renew(&mut self) -> Result<bool, LockError> {
        self.extend_lease(self.lease_length, None).await
    }

    /// What a nested call on this held lock asks of it: the lease lasts at
    /// least `lock_at_most_for` from now and the lock is kept at least
    /// `lock_at_least_for` from now. Never shortens either, and asks the store
    /// only when the lease would end sooner. `Ok(false)`: the lease had already ended.
    pub(crate) async fn cover(
        &mut self,
        lock_at_most_for: Duration,
        lock_at_least_for: Duration,
    ) -> Result<bool, LockError> {
        let now = Instant::now();
        let extended = if now + lock_at_most_for > self.lease_until {
            self.extend_lease(lock_at_most_for, None).await?
        } else {
            self.lease.is_some()
        };
        if extended && !lock_at_least_for.is_zero() {
            let keep_until = now + lock_at_least_for;
            self.keep_until = Some(
                self.keep_until
                    .map_or(keep_until, |kept| kept.max(keep_until)),
            );
        }
        Ok(extended)
    }

    /// The lease length last asked of the store.
    pub(crate) fn lease_length(&self) -> Duration {
        self.lease_length
    }

    async fn extend_lease(
        &mut self,
        lock_at_most_for: Duration,
        lock_at_least_for: Option<Duration>,
    ) -> Result<bool, LockError> {
        let Some(lease) = self.lease.as_ref() else {
            return Ok(false);
        };
        let requested_at = Instant::now();
        match lease.extend(lock_at_most_for).await {
            Ok(true) if !vouches_for(requested_at + lock_at_most_for, lock_at_most_for) => {
                tracing::warn!(
                    lock = %self.name(), answered_in = ?requested_at.elapsed(), ?lock_at_most_for,
                    "lock extension answered too late to vouch for the lease; given back, the lease counts as lost"
                );
                if let Some(lease) = self.lease.take() {
                    let until = requested_at + lock_at_most_for;
                    BackgroundRelease::held(self.info.name.clone(), lease.clone(), until).spawn();
                    self.ended = Some(lease);
                }
                Ok(false)
            }
            Ok(true) => {
                self.lease_until = requested_at + lock_at_most_for;
                self.lease_length = lock_at_most_for;
                if let Some(lock_at_least_for) = lock_at_least_for {
                    self.keep_until = Some(Instant::now() + lock_at_least_for);
                }
                tracing::debug!(lock = %self.name(), ?lock_at_most_for, "lock extended");
                Ok(true)
            }
            Ok(false) => {
                tracing::warn!(lock = %self.name(), "lock lease lost: extension found it ended");
                self.ended = self.lease.take();
                Ok(false)
            }
            Err(err) => {
                tracing::warn!(lock = %self.name(), error = %err, "lock extension failed");
                Err(err)
            }
        }
    }

    /// How much longer the lock must be kept (`lock_at_least_for`).
    fn keep_for(&self) -> Duration {
        self.keep_until.map_or(Duration::ZERO, |keep_until| {
            keep_until.saturating_duration_since(Instant::now())
        })
    }

    /// Releases the lock. Before `lock_at_least_for` has passed since
    /// acquisition, the lock stays held until then; after it, it is free at once.
    ///
    /// A lease that already ended is left alone: the next holder's lock is
    /// never touched.
    pub async fn unlock(self) -> Result<(), LockError> {
        self.unlock_with(None).await.map(drop)
    }

    /// Like [`unlock`](Self::unlock), after a run under the lock: a store
    /// that keeps run history records `run` in the same round trip (its
    /// finish time by the store's clock, and this holder). A lease found
    /// ended records the run as [`RunOutcome::LeaseLost`](crate::RunOutcome::LeaseLost).
    pub async fn unlock_after_run(self, run: FinishedRun) -> Result<(), LockError> {
        self.unlock_with(Some(run)).await.map(drop)
    }

    /// [`unlock_after_run`](Self::unlock_after_run), telling whether the
    /// lease was still held (`false`: it had ended, found so now or before).
    pub(crate) async fn release_after_run(self, run: FinishedRun) -> Result<bool, LockError> {
        self.unlock_with(Some(run)).await
    }

    async fn unlock_with(mut self, run: Option<FinishedRun>) -> Result<bool, LockError> {
        let Some(lease) = self.lease.as_ref() else {
            if let (Some(ended), Some(run)) = (self.ended.take(), run) {
                let lost = FinishedRun {
                    outcome: RunOutcome::LeaseLost,
                    ..run
                };
                if let Err(err) = ended.record_lost_run(&lost).await {
                    tracing::debug!(lock = %self.name(), error = %err, "the lost run was not recorded");
                }
            }
            return Ok(false);
        };
        let keep_for = self.keep_for();
        let released = match &run {
            Some(run) => lease.release_after_run(keep_for, run).await,
            None => lease.release(keep_for).await,
        };
        // Taken only now: if this future is dropped mid-release, `Drop` still
        // releases the lease in the background.
        self.lease = None;
        match released {
            Ok(true) => {
                tracing::debug!(lock = %self.name(), ?keep_for, "lock released");
                Ok(true)
            }
            Ok(false) => {
                tracing::warn!(
                    lock = %self.name(),
                    "lock lease had already ended before release; the job ran longer than lock_at_most_for"
                );
                Ok(false)
            }
            Err(err) => {
                tracing::warn!(lock = %self.name(), error = %err, "lock release failed; it ends at lock_at_most_for");
                Err(err)
            }
        }
    }
}

/// How much of a lease must be left when the answer that grants (or
/// extends) it arrives, for the guard to trust it: a twentieth of the lease,
/// at most a second, plus 0.2 % for the rates of the store's clock and this
/// process's. Leaner, and a job could start on a lease about to end.
fn safety_margin(lease: Duration) -> Duration {
    (lease / 20).min(Duration::from_secs(1)) + lease / 500
}

/// Whether a lease of `lease` that ends at `lease_until` still has its
/// safety margin left now.
fn vouches_for(lease_until: Instant, lease: Duration) -> bool {
    lease_until.saturating_duration_since(Instant::now()) > safety_margin(lease)
}

/// A lease a store has just granted, not yet a guard. The one rule of a
/// lease's clock, for every provider: the guard counts the lease from when
/// its request was sent, and an answer that arrives with less than a safety
/// margin of it left is renewed once (an ownership-checked extension, counted
/// from its own request) or given back.
#[must_use = "a granted lease becomes a guard through `vouch`; dropped, it is given back"]
pub struct GrantedLease(LockGuard);

impl GrantedLease {
    /// A lease just taken in a store, with its fencing token. For providers:
    /// [`vouch`](Self::vouch) makes it a guard.
    ///
    /// `requested_at` is the instant just before the acquisition was sent: the
    /// store's lease cannot end before `requested_at + lock_at_most_for`.
    pub fn new(
        config: &LockConfiguration,
        fencing_token: u64,
        requested_at: Instant,
        lease: impl Lease,
    ) -> Self {
        Self::locked_at(
            config,
            Some(fencing_token),
            requested_at,
            SystemTime::now(),
            Arc::new(lease),
        )
    }

    /// A lease just taken in a store whose fencing token is issued on the
    /// first request, by [`Lease::issue_fencing_token`]. For providers:
    /// [`vouch`](Self::vouch) makes it a guard.
    pub fn with_token_on_request(
        config: &LockConfiguration,
        requested_at: Instant,
        lease: impl Lease,
    ) -> Self {
        Self::locked_at(
            config,
            None,
            requested_at,
            SystemTime::now(),
            Arc::new(lease),
        )
    }

    /// [`new`](Self::new) (with `Some(fencing_token)`) or
    /// [`with_token_on_request`](Self::with_token_on_request) (with `None`)
    /// for a provider that holds its lease behind an `Arc` already: the
    /// guard shares that one, with no second allocation.
    pub fn with_shared_lease(
        config: &LockConfiguration,
        fencing_token: Option<u64>,
        requested_at: Instant,
        lease: Arc<dyn Lease>,
    ) -> Self {
        Self::locked_at(
            config,
            fencing_token,
            requested_at,
            SystemTime::now(),
            lease,
        )
    }

    /// [`new`](Self::new) or [`with_token_on_request`](Self::with_token_on_request)
    /// (`fencing_token` `None`), for a provider that has read the wall clock already.
    pub(crate) fn locked_at(
        config: &LockConfiguration,
        fencing_token: Option<u64>,
        requested_at: Instant,
        locked_at: SystemTime,
        lease: Arc<dyn Lease>,
    ) -> GrantedLease {
        let fencing_token = match fencing_token {
            Some(token) => FencingToken::given(token),
            None => FencingToken::on_request(lease.clone()),
        };
        // Measured from the reply, so the lock is never freed early.
        let least = config.lock_at_least_for();
        let keep_until = (!least.is_zero()).then(|| Instant::now() + least);
        GrantedLease(LockGuard {
            info: LockInfo {
                name: config.shared_name().clone(),
                fencing_token,
                locked_at,
            },
            keep_until,
            lease_until: requested_at + config.lock_at_most_for(),
            lease_length: config.lock_at_most_for(),
            lease: Some(lease),
            ended: None,
            tick: config.tick_millis(),
            previous_tick: None,
        })
    }

    /// For providers: the tick claimed before this acquisition's, in
    /// milliseconds since 1970, as the store kept it (`None`: none was).
    /// Kept only when the acquisition claimed a tick
    /// ([`LockConfiguration::for_tick`]).
    pub fn after_tick(mut self, previous_tick_millis: Option<i64>) -> Self {
        self.0.previous_tick = previous_tick_millis.filter(|_| self.0.tick.is_some());
        self
    }

    /// The guard of this lease, if its answer came soon enough to vouch for
    /// it (or a renewal did). `None`: the lease was given back (a `warn`
    /// event says so), and the acquisition counts as not taken.
    pub async fn vouch(self) -> Option<LockGuard> {
        let guard = self.0;
        if vouches_for(guard.lease_until, guard.lease_length) {
            return Some(guard);
        }
        // Boxed: the late answer is rare, and every acquisition's future
        // would otherwise carry the renewal's state.
        Box::pin(renew_late(guard)).await
    }
}

/// A lease whose answer came too late to vouch for it: renewed once, or
/// given back (`None`).
async fn renew_late(mut guard: LockGuard) -> Option<LockGuard> {
    let lease = guard.lease_length;
    tracing::warn!(
        lock = %guard.name(), ?lease,
        "lock acquisition answered too late to vouch for its lease; renewing it before use"
    );
    match guard.extend_lease(lease, None).await {
        Ok(true) => return Some(guard),
        Ok(false) => {} // ended, or late again: given back already
        Err(err) => {
            tracing::warn!(lock = %guard.name(), error = %err, "renewing a late lease failed");
        }
    }
    tracing::warn!(
        lock = %guard.name(),
        "lock acquisition answered too late to vouch for its lease; given back, not acquired"
    );
    guard.keep_until = None;
    drop(guard); // a lease still held is given back in the background
    None
}

impl fmt::Debug for GrantedLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrantedLease").field(&self.0).finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            BackgroundRelease::held(self.info.name.clone(), lease, self.lease_until)
                .keeping_until(self.keep_until)
                .spawn();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name())
            .field("fencing_token", &self.info.issued_fencing_token())
            .field("held", &self.lease.is_some())
            .finish()
    }
}
