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

/// A writer that keeps what the log subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[scheduler_lock(name = "also-never-configured", lock_at_most_for = "10s")]
async fn hourly_report() {}

#[tokio::test]
async fn a_call_with_no_provider_is_logged_at_error_once_per_lock_name() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    for _ in 0..3 {
        assert!(matches!(
            hourly_report().await,
            Err(LockError::NotConfigured)
        ));
    }
    let log =
        String::from_utf8_lossy(&captured.0.lock().map(|log| log.clone()).unwrap_or_default())
            .into_owned();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("also-never-configured"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once per lock name:\n{log}");
    assert!(errors[0].contains("SchedulerLock::builder"), "{log}");
}

static CRON_RAN: AtomicBool = AtomicBool::new(false);

#[scheduler_lock(name = "cron-never-configured-{region}", lock_at_most_for = "10s")]
async fn cron_report(region: &str) {
    CRON_RAN.store(true, Ordering::SeqCst);
}

static LOCKS: std::sync::LazyLock<shedlock::InMemoryLockProvider> =
    std::sync::LazyLock::new(shedlock::InMemoryLockProvider::new);

#[scheduler_lock(name = "cron-own-provider", lock_at_most_for = "10s", provider = &*LOCKS)]
async fn cron_report_with_its_provider() {
    CRON_RAN.store(true, Ordering::SeqCst);
}

#[tokio::test]
async fn a_cron_job_without_any_provider_is_refused_when_it_is_made() {
    let jobs = shedlock::cron::LockedJobs::new();
    for made in [
        jobs.annotated_job("*/1 * * * * *", || cron_report("europe")),
        jobs.annotated_job("*/1 * * * * *", || async { cron_report("asia").await }),
    ] {
        let message = match made {
            Err(LockError::InvalidConfiguration(message)) => message,
            other => panic!("made without a provider: {:?}", other.map(|_| "a job")),
        };
        assert!(
            message.contains("SchedulerLock::builder") && message.contains("provider = .."),
            "{message}"
        );
    }
    // One naming its own provider is made.
    assert!(
        jobs.annotated_job("*/1 * * * * *", cron_report_with_its_provider)
            .is_ok()
    );
    // Finding out ran no job and took no lock.
    assert!(!CRON_RAN.load(Ordering::SeqCst), "a body ran");
    let held = shedlock::admin::LockAdmin::lock_state(&*LOCKS, "cron-own-provider").await;
    assert!(held.is_ok_and(|state| !state.is_locked()));
}
