use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m")]
struct NightlyReport;

fn main() {
    let _ = NightlyReport;
}
