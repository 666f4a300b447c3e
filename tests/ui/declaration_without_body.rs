use shedlock::scheduler_lock;

trait Report {
    #[scheduler_lock(name = "nightly-report", lock_at_most_for = "10m")]
    async fn run(&self);
}

fn main() {}
