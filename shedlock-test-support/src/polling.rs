//! Waiting for a condition a test can only poll (a replica in sync, a
//! master without replicas).

use std::time::{Duration, Instant};

/// Waits up to `timeout` for `ready`, polling every 20 ms; fails the test,
/// naming `what` it waited for, when the time is up.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            fail!("gave up after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
