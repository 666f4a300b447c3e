use shedlock::scheduler_lock;

const NAME: &str = "nightly-report";

#[scheduler_lock(name = NAME, lock_at_most_for = "10m")]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
