#[shedlock::scheduler_lock(name = "export", lock_at_most_for = "10m", permits = 5, capacity = 3)]
async fn export() {}

fn main() {}
