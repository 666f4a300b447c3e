use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m")]
fn nightly_report() -> u32 {
    42
}

fn main() {
    // The function is kept unchanged beside the error: this still type-checks.
    let _: u32 = nightly_report();
}
