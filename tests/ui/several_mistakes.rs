use shedlock::scheduler_lock;

// Every mistake is reported at once, each at its own token.
#[scheduler_lock(retries = 3, lock_at_most_for = "soon", lock_at_least_for = 5)]
fn nightly_report() {}

fn main() {
    nightly_report();
}
