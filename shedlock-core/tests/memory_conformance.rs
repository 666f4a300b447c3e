//! The in-memory provider passes the conformance suite. Each "connection" is
//! a clone of one provider: clones share the same locks.

use std::sync::OnceLock;

use shedlock_core::InMemoryLockProvider;

async fn provider() -> InMemoryLockProvider {
    static SHARED: OnceLock<InMemoryLockProvider> = OnceLock::new();
    SHARED.get_or_init(InMemoryLockProvider::new).clone()
}

shedlock_test_support::provider_conformance_tests!(provider);

mod kinds {
    use super::provider;

    shedlock_test_support::lock_kinds_conformance_tests!(provider);
}
