#[shedlock::scheduler_lock(name = "catalog", lock_at_most_for = "10m", mode = "read")]
async fn read_catalog() {}

#[shedlock::scheduler_lock(name = "catalog2", lock_at_most_for = "10m", mode = shared)]
async fn read_catalog2() {}

fn main() {}
