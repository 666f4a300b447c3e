use shedlock::scheduler_lock;

#[scheduler_lock(
    name = "nightly-report",
    lock_at_most_for = "PT30M",
    lock_at_least_for = "1h"
)]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
