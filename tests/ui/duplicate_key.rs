use shedlock::scheduler_lock;

#[scheduler_lock(
    name = "nightly-report",
    lock_at_most_for = "10m",
    name = "daily-report"
)]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
