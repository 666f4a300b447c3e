use shedlock::scheduler_lock;

#[scheduler_lock(name = "report-{regoin}", lock_at_most_for = "10m")]
async fn report(region: &str) -> usize {
    region.len()
}

fn main() {
    drop(report("eu"));
}
