use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = 30)]
async fn nightly_report() {}

#[scheduler_lock(name = "weekly-report", lock_at_most_for = std::time::Duration::from_secs(30))]
async fn weekly_report() {}

fn main() {
    drop(nightly_report());
    drop(weekly_report());
}
