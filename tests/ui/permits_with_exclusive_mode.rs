#[shedlock::scheduler_lock(name = "export", lock_at_most_for = "10m", mode = "exclusive", permits = 3)]
async fn export() {}

fn main() {}
