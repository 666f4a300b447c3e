use shedlock::scheduler_lock;

#[scheduler_lock("nightly-report")]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
