//! The process-wide default that scoped jobs (`#[scheduler_lock(scope = ..)]`)
//! of a test binary use: in memory, with short scope leases and sweeps.

use std::sync::Once;
use std::time::Duration;

use shedlock_core::{InMemoryLockProvider, SchedulerLock};

/// Installs, once per test binary, an in-memory default with scope leases
/// of `lease` and sweeps every `sweep` (the first call's values win), and a
/// `lock_at_most_for` of 60 s. Scoped jobs of the tests name their own
/// providers; the default gives them their scope timing.
pub fn install_default_for_scopes(lease: Duration, sweep: Duration) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if let Err(err) = SchedulerLock::builder(InMemoryLockProvider::new())
            .default_lock_at_most_for(Duration::from_secs(60))
            .scope_lease_duration(lease)
            .scope_sweep_interval(sweep)
            .install()
        {
            fail!("cannot install the default: {err}");
        }
    });
}
