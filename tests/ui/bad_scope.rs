#[shedlock::scheduler_lock(name = "job", lock_at_most_for = "10s", scope = "  ")]
async fn empty_scope() {}

#[shedlock::scheduler_lock(name = "job2", lock_at_most_for = "10s", scope = tenant)]
async fn scope_not_a_string() {}

#[shedlock::scheduler_lock(name = "job3", lock_at_most_for = "10s", scope = "t", keep_alive = true)]
async fn scope_with_keep_alive() {}

#[shedlock::scheduler_lock(name = "job4", lock_at_most_for = "10s", scope = "t", mode = "shared")]
async fn scope_with_shared_mode() {}

#[shedlock::scheduler_lock(name = "job5", lock_at_most_for = "10s", scope = "t", capacity = 2)]
async fn scope_with_capacity() {}

#[shedlock::scheduler_lock(name = "job6", lock_at_most_for = "10s", scope = "tenant-{tenant}")]
async fn unknown_scope_placeholder() {}

fn main() {}
