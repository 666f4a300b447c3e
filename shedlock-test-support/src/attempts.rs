//! A provider that records the acquisition attempts asked of it: how many
//! round trips a caller made, and when.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shedlock_core::{BoxFuture, LockConfiguration, LockError, LockGuard, LockProvider, Waiter};

/// `P`, recording when each acquisition attempt (`try_lock`,
/// `try_lock_waiting`) was asked of it; everything else is `P`'s. Clones
/// share the record.
#[derive(Clone, Default)]
pub struct AttemptsRecorded<P> {
    provider: P,
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl<P> AttemptsRecorded<P> {
    /// `provider`, with no attempt recorded yet.
    pub fn new(provider: P) -> Self {
        AttemptsRecorded {
            provider,
            attempts: Arc::default(),
        }
    }

    /// The provider asked.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// How many attempts were asked so far.
    pub fn attempts(&self) -> usize {
        self.record().len()
    }

    /// When the last attempt was asked; a test failure when none was.
    pub fn last_attempt(&self) -> Instant {
        *self
            .record()
            .last()
            .unwrap_or_else(|| fail!("no attempt yet"))
    }

    /// Whether the last two attempts came at least `interval` apart.
    pub fn polls_every(&self, interval: Duration) -> bool {
        let attempts = self.record();
        attempts.len() >= 2
            && attempts[attempts.len() - 1] - attempts[attempts.len() - 2] >= interval
    }

    /// Returns once `attempts` attempts were asked.
    pub async fn wait_for_attempts(&self, attempts: usize) {
        while self.attempts() < attempts {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn record(&self) -> MutexGuard<'_, Vec<Instant>> {
        self.attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: LockProvider> LockProvider for AttemptsRecorded<P> {
    fn try_lock<'a>(
        &'a self,
        config: &'a LockConfiguration,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        self.record().push(Instant::now());
        self.provider.try_lock(config)
    }

    fn try_lock_waiting<'a>(
        &'a self,
        config: &'a LockConfiguration,
        waiter: &'a Waiter,
    ) -> BoxFuture<'a, Result<Option<LockGuard>, LockError>> {
        self.record().push(Instant::now());
        self.provider.try_lock_waiting(config, waiter)
    }

    delegate_to_inner!(provider);
}
