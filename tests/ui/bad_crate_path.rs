use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m", crate = 5)]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
