//! `FaultyProvider`: any provider whose answers come late and whose
//! renewals fail on command, to test what holders do with a slow or failing
//! store (leader leases, job scopes, keep-alive).
//!
//! ```
//! use std::time::Duration;
//! use shedlock_core::InMemoryLockProvider;
//! use shedlock_test_support::faults::FaultyProvider;
//!
//! let provider = FaultyProvider::new(InMemoryLockProvider::new());
//! let faults = provider.faults();
//! faults.delay_answers(Duration::from_millis(500)); // every answer arrives 0.5 s late
//! faults.fail_renewals(true);                       // every extension fails
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock_core::{
    BoxFuture, GrantedLease, Lease, LockConfiguration, LockError, LockGuard, LockProvider,
    StoreFailure, Waiter,
};

/// The faults a [`FaultyProvider`] injects now; changed at any time.
#[derive(Debug, Default)]
pub struct Faults {
    answer_delay: Mutex<Duration>,
    fail_renewals: AtomicBool,
}

impl Faults {
    /// From now on, every acquisition's and extension's answer reaches the
    /// caller `delay` after the store gave it (the store acted on time).
    pub fn delay_answers(&self, delay: Duration) {
        *self
            .answer_delay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = delay;
    }

    /// From now on, every extension fails with a store error (`true`), or
    /// reaches the store again (`false`).
    pub fn fail_renewals(&self, fail: bool) {
        self.fail_renewals.store(fail, Ordering::Release);
    }

    fn delay(&self) -> Duration {
        *self
            .answer_delay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn late_answer(&self) {
        let delay = self.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// `inner` with the [`Faults`] of [`faults`](Self::faults).
#[derive(Clone)]
pub struct FaultyProvider<P> {
    inner: P,
    faults: Arc<Faults>,
}

impl<P: LockProvider> FaultyProvider<P> {
    /// `inner`, with no fault yet.
    pub fn new(inner: P) -> Self {
        FaultyProvider {
            inner,
            faults: Arc::default(),
        }
    }

    /// The switches of this provider's faults (shared by its clones).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// Wraps the inner provider's guard, whose answer arrives late.
    async fn answer(
        &self,
        config: &LockConfiguration,
        requested_at: Instant,
        taken: Result<Option<LockGuard>, LockError>,
    ) -> Result<Option<LockGuard>, LockError> {
        self.faults.late_answer().await;
        let Some(inner) = taken? else {
            return Ok(None);
        };
        let lease = FaultyLease {
            inner: tokio::sync::Mutex::new(Some(inner)),
            faults: self.faults.clone(),
        };
        Ok(
            GrantedLease::with_token_on_request(config, requested_at, lease)
                .vouch()
                .await,
        )
    }
}

impl<P: LockProvider> LockProvider for FaultyProvider<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move {
            let requested_at = Instant::now();
            let taken = self.inner.try_lock(config).await;
            self.answer(config, requested_at, taken).await
        })
    }

    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        Box::pin(async move {
            let requested_at = Instant::now();
            let taken = self.inner.try_lock_waiting(config, waiter).await;
            self.answer(config, requested_at, taken).await
        })
    }

    delegate_to_inner!(inner);
}

/// The inner provider's guard, seen through the faults.
struct FaultyLease {
    inner: tokio::sync::Mutex<Option<LockGuard>>,
    faults: Arc<Faults>,
}

impl Lease for FaultyLease {
    fn extend(&self, lock_at_most_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        Box::pin(async move {
            if self.faults.fail_renewals.load(Ordering::Acquire) {
                return Err(StoreFailure {
                    store: "faulty",
                    action: "extending a lease".into(),
                    what_happened: "renewals fail on command (FaultyProvider)".into(),
                    consequence: "the lease was not extended".into(),
                }
                .into());
            }
            let extended = match self.inner.lock().await.as_mut() {
                Some(inner) => inner.extend(lock_at_most_for, Duration::ZERO).await?,
                None => false,
            };
            self.faults.late_answer().await;
            Ok(extended)
        })
    }

    fn release(&self, _keep_for: Duration) -> BoxFuture<'_, Result<bool, LockError>> {
        // The inner guard keeps the same `lock_at_least_for`.
        Box::pin(async move {
            match self.inner.lock().await.take() {
                Some(inner) => inner.unlock().await.map(|()| true),
                None => Ok(false),
            }
        })
    }

    fn issue_fencing_token(&self) -> BoxFuture<'_, Result<Option<u64>, LockError>> {
        Box::pin(async move {
            let token = match self.inner.lock().await.as_ref() {
                Some(inner) => match inner.fencing_token().await {
                    Ok(token) => Some(token),
                    Err(LockError::LeaseLost { .. }) => None,
                    Err(err) => return Err(err),
                },
                None => None,
            };
            self.faults.late_answer().await;
            Ok(token)
        })
    }
}
