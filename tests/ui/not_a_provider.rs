use shedlock::scheduler_lock;

struct NotAProvider;

#[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m", provider = NotAProvider)]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
