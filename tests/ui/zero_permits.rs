#[shedlock::scheduler_lock(name = "export", lock_at_most_for = "10m", permits = 0, capacity = 9)]
async fn export() {}

fn main() {}
