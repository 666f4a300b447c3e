use shedlock::scheduler_lock;

#[scheduler_lock(name = "nightly-report", timeout = "5s")]
async fn nightly_report() {}

fn main() {
    drop(nightly_report());
}
