use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = , lock_at_least_for = "1x")]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
