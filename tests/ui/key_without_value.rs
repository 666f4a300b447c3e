use shedlock::scheduler_lock;

#[scheduler_lock(name, lock_at_most_for = "10m")]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
