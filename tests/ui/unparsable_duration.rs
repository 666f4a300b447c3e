use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "ten minutes")]
async fn nightly_report() {}

#[scheduler_lock(name = "monthly-report", lock_at_most_for = "P1M")]
async fn monthly_report() {}

#[scheduler_lock(
    name = "hourly-report",
    lock_at_most_for = "1h",
    lock_at_least_for = "PT5"
)]
async fn hourly_report() {}

fn main() {
    drop(nightly_report());
    drop(monthly_report());
    drop(hourly_report());
}
