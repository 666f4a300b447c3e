//! `#[scheduler_lock]` without a provider, in a process where none is installed.
//!
//! Its own test binary: `SchedulerLock::install` is process-wide, and no test
//! here may install one.

use std::sync::atomic::{AtomicBool, Ordering};

use shedlock::{LockError, scheduler_lock};

static RAN: AtomicBool = AtomicBool::new(false);

#[scheduler_lock(name = "never-configured", lock_at_most_for = "10s")]
async fn nightly_report() {
    RAN.store(true, Ordering::SeqCst);
}

#[tokio::test]
async fn without_provider_or_installed_default_fails_with_not_configured() {
    let outcome = nightly_report().await;
    assert!(
        matches!(outcome, Err(LockError::NotConfigured)),
        "{outcome:?}"
    );
    assert!(!RAN.load(Ordering::SeqCst), "the body ran without a lock");
    let message = outcome.map_err(|error| error.to_string()).err();
    assert!(message.is_some_and(|m| m.contains("SchedulerLock::builder")));
}
