//! Providers used after the Tokio runtime that made them is gone (a
//! `#[tokio::test]` per test, a runtime per request in some services).

use std::future::Future;
use std::time::Duration;

use shedlock_core::{LockConfiguration, LockProvider};

/// Makes a provider with `make` on a runtime of its own, takes and releases
/// a lock there (so its connections exist on that runtime), and returns it
/// once that runtime is gone.
pub fn made_on_a_dropped_runtime<P, F>(make: F) -> P
where
    P: LockProvider,
    F: Future<Output = P> + Send + 'static,
{
    let made = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| fail!("cannot build a runtime: {err}"));
        let provider = runtime.block_on(async {
            let provider = make.await;
            lock_cycle(&provider, "other-runtime-warm-up", "the warm-up").await;
            provider
        });
        drop(runtime);
        provider
    });
    made.join()
        .unwrap_or_else(|_| fail!("making the provider on its own runtime panicked"))
}

/// Three lock cycles of `name` on `provider`, each taking the free lock and
/// releasing it, on the caller's runtime.
pub async fn lock_cycles_work<P: LockProvider>(provider: &P, name: &str) {
    for cycle in 0..3 {
        lock_cycle(provider, name, &format!("cycle {cycle} on a new runtime")).await;
    }
}

/// Takes the free lock `name` and releases it; failures name `what`.
async fn lock_cycle<P: LockProvider>(provider: &P, name: &str, what: &str) {
    let config = LockConfiguration::new(name, Duration::from_secs(10), Duration::ZERO)
        .unwrap_or_else(|err| fail!("{err}"));
    let guard = provider
        .try_lock(&config)
        .await
        .unwrap_or_else(|err| fail!("{what}: acquisition: {err} ({err:?})"))
        .unwrap_or_else(|| fail!("{what}: the free lock was not taken"));
    guard
        .unlock()
        .await
        .unwrap_or_else(|err| fail!("{what}: release: {err}"));
}
