#[shedlock::scheduler_lock(name = "export", lock_at_most_for = "10m", permits = "3")]
async fn export() {}

#[shedlock::scheduler_lock(name = "export2", lock_at_most_for = "10m", capacity = -1)]
async fn export2() {}

#[shedlock::scheduler_lock(name = "export3", lock_at_most_for = "10m", capacity = 5000000)]
async fn export3() {}

#[shedlock::scheduler_lock(name = "export4", lock_at_most_for = "10m", permits = 2u8)]
async fn export4() {}

fn main() {}
