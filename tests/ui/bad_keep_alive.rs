#[shedlock::scheduler_lock(name = "job", lock_at_most_for = "10s", keep_alive = "yes")]
async fn job() {}

#[shedlock::scheduler_lock(name = "job2", lock_at_most_for = "10s", wait_for = "soon")]
async fn job2() {}

fn main() {}
