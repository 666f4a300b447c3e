#[shedlock::scheduler_lock(name = "job", lock_at_most_for = "10s", every = "0s")]
async fn every_zero() {}

#[shedlock::scheduler_lock(name = "job2", lock_at_most_for = "10s", every = 5)]
async fn every_without_unit() {}

#[shedlock::scheduler_lock(name = "job3", lock_at_most_for = "10s", every = "5m", scope = "t")]
async fn every_with_scope() {}

#[shedlock::scheduler_lock(name = "job4", lock_at_most_for = "10s", every = "5m", mode = "shared")]
async fn every_with_shared_mode() {}

#[shedlock::scheduler_lock(name = "job5", lock_at_most_for = "10s", every = "5m", every = "1m")]
async fn every_twice() {}

#[shedlock::scheduler_lock(name = "job6", lock_at_most_for = "10s", every = "5m", misfire = "later")]
async fn unknown_misfire() {}

#[shedlock::scheduler_lock(name = "job7", lock_at_most_for = "10s", misfire = "run_once")]
async fn misfire_without_every() {}

fn main() {}
