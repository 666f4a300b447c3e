use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m")]
const fn nightly_report() -> u32 {
    42
}

fn main() {
    let _: u32 = nightly_report();
}
