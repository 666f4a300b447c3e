//! Operators on the SQL tables (`LockAdmin`), on PostgreSQL, MariaDB and
//! SQLite: the lock-kinds conformance cases that need no shared holders,
//! and the cases of an exclusive-only table: a pause makes acquisitions
//! skip until the resume, the state shows the row's holder by the database's
//! clock, force-release ends the lease, bad names and capacities are refused.

mod support;

use std::time::{Duration, SystemTime};

use shedlock_core::{
    LockConfiguration, LockError, LockMode, LockState, LockingTaskExecutor, MAX_PERMITS,
};
use shedlock_test_support::conformance::{
    Make, acquire, assert_skipped, token_of_a_cycle, unique_name, unlock,
};
use shedlock_test_support::kinds::{AdminProvider, admin, assert_listed_as_held, state};
use shedlock_test_support::sql::TestTable;

const LONG: Duration = Duration::from_secs(30);

fn config(name: &str) -> LockConfiguration {
    LockConfiguration::new(name, LONG, Duration::ZERO).unwrap_or_else(|err| panic!("{err}"))
}

/// A pause makes every acquisition skip, of a name never locked and of one
/// with a row; the resume lets the next one in.
async fn a_paused_lock_is_skipped_until_resumed<P: AdminProvider>(make: impl Make<P>) {
    let (service, operator) = make.two().await;
    let fresh = config(&unique_name("paused-fresh"));
    let used = config(&unique_name("paused-used"));
    acquire(&service, &used)
        .await
        .unlock()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    for job in [&fresh, &used] {
        admin("pause", operator.pause(job.name())).await;
        assert_skipped(&service, job).await;
        let seen = state(&operator, job.name()).await;
        assert!(
            seen.paused && seen.capacity == Some(0) && !seen.is_locked(),
            "{seen:?}"
        );
        admin("resume", operator.resume(job.name())).await;
        let seen = state(&operator, job.name()).await;
        assert!(!seen.paused && seen.capacity.is_none(), "{seen:?}");
        let guard = acquire(&service, job).await;
        guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    }
}

/// The executor skips a paused job and runs it after the resume.
async fn a_paused_job_does_not_run<P: AdminProvider>(make: impl Make<P>) {
    let operator = make.one().await;
    let executor = LockingTaskExecutor::new(make.one().await);
    let job = config(&unique_name("paused-job"));
    admin("pause", operator.pause(job.name())).await;
    let ran = executor.execute(&job, async { "ran" }).await;
    assert!(matches!(ran, Ok(None)), "a paused job ran: {ran:?}");
    admin("resume", operator.resume(job.name())).await;
    let ran = executor.execute(&job, async { "ran" }).await;
    assert!(matches!(ran, Ok(Some("ran"))), "{ran:?}");
}

/// A lock paused by default (`with_capacity(0)`) runs once an operator
/// stores a capacity, and stops again when it is set back to 0.
async fn a_lock_paused_by_default_runs_once_given_a_capacity<P: AdminProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let name = unique_name("paused-by-default");
    let job = config(&name)
        .with_capacity(0)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_skipped(&provider, &job).await;
    admin("set_capacity", provider.set_capacity(&name, 1)).await;
    let guard = acquire(&provider, &job).await;
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    admin("set_capacity 0", provider.set_capacity(&name, 0)).await;
    assert_skipped(&provider, &job).await;
    admin("resume", provider.resume(&name)).await;
    assert_eq!(state(&provider, &name).await.capacity, Some(1));
    let guard = acquire(&provider, &job).await;
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
}

/// The state shows the row's holder: who (without the acquisition's id),
/// since when, how long it has left by the database's clock, its token.
async fn the_state_shows_the_holder_of_the_row<P: AdminProvider>(make: impl Make<P>) {
    let (holder, operator) = make.two().await;
    let name = unique_name("state");
    let free = state(&operator, &name).await;
    assert_eq!(free.name, name);
    assert!(
        !free.is_locked() && free.capacity.is_none() && !free.paused,
        "{free:?}"
    );
    let before = SystemTime::now();
    let guard = acquire(&holder, &config(&name)).await;
    let seen = state(&operator, &name).await;
    let [row] = seen.holders.as_slice() else {
        panic!("one holder expected: {seen:?}")
    };
    assert_eq!(row.locked_by, holder.replica_identity(), "{seen:?}");
    assert_eq!(row.mode, LockMode::Exclusive);
    let locked_at = row
        .locked_at
        .unwrap_or_else(|| panic!("no locked_at: {seen:?}"));
    let off = locked_at
        .duration_since(before)
        .unwrap_or_else(|early| early.duration());
    assert!(
        off < Duration::from_secs(5),
        "locked_at {off:?} off: {seen:?}"
    );
    let left = row
        .lease_left
        .unwrap_or_else(|| panic!("no lease end: {seen:?}"));
    assert!(
        left <= LONG && left > LONG - Duration::from_secs(5),
        "{seen:?}"
    );
    assert_eq!(
        row.fencing_token,
        Some(
            guard
                .fencing_token()
                .await
                .unwrap_or_else(|err| panic!("{err}"))
        ),
        "the fencing column's token: {seen:?}"
    );
    assert_eq!((row.renewals, row.renewed_ago), (None, None));
    assert_listed_as_held(&operator, &name).await;
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    let after = state(&operator, &name).await;
    assert!(!after.is_locked(), "{after:?}");
    let listed = admin("list_locks", operator.list_locks()).await;
    assert!(
        !listed.iter().any(|lock| lock.name == name),
        "a free lock without settings is listed: {listed:?}"
    );
}

/// The list holds held and configured locks, sorted by name.
async fn the_list_holds_held_and_configured_locks_sorted<P: AdminProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let base = unique_name("list");
    let (held, paused, sized) = (
        format!("{base}-c-held"),
        format!("{base}-a-paused"),
        format!("{base}-b-sized"),
    );
    let guard = acquire(&provider, &config(&held)).await;
    admin("pause", provider.pause(&paused)).await;
    admin("set_capacity", provider.set_capacity(&sized, 5)).await;
    let listed = admin("list_locks", provider.list_locks()).await;
    let ours: Vec<&LockState> = listed
        .iter()
        .filter(|lock| lock.name.starts_with(&base))
        .collect();
    let names: Vec<&str> = ours.iter().map(|lock| lock.name.as_str()).collect();
    assert_eq!(names, [&paused, &sized, &held], "{listed:?}");
    assert!(ours[0].paused && !ours[0].is_locked());
    assert_eq!(ours[1].capacity, Some(5));
    assert!(ours[2].is_locked() && ours[2].capacity.is_none());
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(sorted, listed, "the list is not sorted by name");
    guard.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    admin("resume", provider.resume(&paused)).await;
}

/// Force-release ends the lease now: the holder's extension and release
/// find it gone, the next holder's token is greater, a second one finds none.
async fn force_release_ends_the_lease<P: AdminProvider>(make: impl Make<P>) {
    let (holder, operator) = make.two().await;
    let job = config(&unique_name("force"));
    let mut stuck = acquire(&holder, &job).await;
    let stuck_token = stuck
        .fencing_token()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        admin("force_release", operator.force_release(job.name())).await,
        1
    );
    assert!(!state(&operator, job.name()).await.is_locked());
    let next = acquire(&operator, &job).await;
    let next_token = next
        .fencing_token()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(next_token > stuck_token, "{next_token} after {stuck_token}");
    assert!(
        matches!(stuck.extend(LONG, Duration::ZERO).await, Ok(false)),
        "a force-released lease was extended"
    );
    let _ = stuck.unlock().await;
    assert!(
        state(&operator, job.name()).await.is_locked(),
        "the old holder freed the next one"
    );
    next.unlock().await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        admin("force_release", operator.force_release(job.name())).await,
        0
    );
}

/// Names the library refuses, and capacities above the maximum, are usage
/// errors before any statement.
async fn bad_names_and_capacities_are_refused<P: AdminProvider>(make: impl Make<P>) {
    let provider = make.one().await;
    let long = "n".repeat(65);
    for name in ["", "  ", long.as_str()] {
        let results = [
            provider.lock_state(name).await.map(drop),
            provider.pause(name).await,
            provider.resume(name).await,
            provider.set_capacity(name, 1).await,
            provider.force_release(name).await.map(drop),
        ];
        for result in results {
            assert!(
                matches!(result, Err(LockError::InvalidConfiguration(_))),
                "{name:?}: {result:?}"
            );
        }
    }
    let name = unique_name("capacity-too-big");
    let refused = provider.set_capacity(&name, MAX_PERMITS + 1).await;
    match refused {
        Err(LockError::InvalidConfiguration(message)) => {
            assert!(message.contains(&MAX_PERMITS.to_string()), "{message}")
        }
        other => panic!("capacity above the maximum: {other:?}"),
    }
    admin("set_capacity", provider.set_capacity(&name, MAX_PERMITS)).await;
    assert_eq!(state(&provider, &name).await.capacity, Some(MAX_PERMITS));
}

/// `prune` of each SQL provider, and a look at its table.
trait Prune: TestTable {
    async fn prune_unused(&self, unused_for: Duration) -> u64;

    /// Whether the lock table has a row for `name`.
    async fn has_row(&self, name: &str) -> bool {
        self.count_rows("", name).await == 1
    }

    /// Whether `name` has its row and is held: what a prune must keep.
    async fn has_held_row(&self, name: &str) -> bool {
        self.has_row(name).await && state(self, name).await.is_locked()
    }

    /// Inserts the row of `name` as ShedLock for Java does (its four
    /// columns, the fencing column left to its default), with an ended lease.
    async fn insert_as_java(&self, name: &str);
    /// Takes and releases the lock `name` as ShedLock for Java does: an
    /// update of its four columns (the fencing column untouched).
    async fn update_as_java(&self, name: &str);
    /// Runs `template` (its `{}`s: the table, then the name's placeholder)
    /// for `name`.
    async fn run_for(&self, template: &str, name: &str);
}

macro_rules! prune_impl {
    ($($provider:ty, $placeholder:literal);*) => {$(
        impl Prune for $provider {
            async fn prune_unused(&self, unused_for: Duration) -> u64 {
                self.prune(unused_for)
                    .await
                    .unwrap_or_else(|err| panic!("prune: {err}"))
            }

            async fn run_for(&self, template: &str, name: &str) {
                let sql = template
                    .replacen("{}", &self.table_name(), 1)
                    .replacen("{}", $placeholder, 1);
                shedlock_sql::sqlx::query(&sql)
                    .bind(name)
                    .execute(self.pool())
                    .await
                    .unwrap_or_else(|err| panic!("{sql}: {err}"));
            }

            async fn update_as_java(&self, name: &str) {
                self.run_for(
                    "UPDATE {} SET lock_until = '2000-01-02 00:00:00.000', \
                     locked_at = '2000-01-02 00:00:00.000', locked_by = 'java-host' WHERE name = {}",
                    name,
                )
                .await;
            }

            async fn insert_as_java(&self, name: &str) {
                self.run_for(
                    "INSERT INTO {} (name, lock_until, locked_at, locked_by) \
                     VALUES ({}, '2000-01-01 00:00:00.000', '2000-01-01 00:00:00.000', 'java-host')",
                    name,
                )
                .await;
            }
        }
    )*};
}

prune_impl!(
    shedlock_sql::PostgresLockProvider, "$1";
    shedlock_sql::MySqlLockProvider, "?";
    shedlock_sql::SqliteLockProvider, "?1"
);

/// Prune deletes the rows of locks unused for the duration and nothing
/// else: not a held lock's, not a recently used one's, no settings; a
/// pruned lock is taken again with a greater token.
async fn prune_deletes_only_the_rows_of_unused_locks<P: AdminProvider + Prune>(make: impl Make<P>) {
    let provider = make.one().await;
    let base = unique_name("prune");
    let (old, recent, held, paused) = (
        config(&format!("{base}-old")),
        config(&format!("{base}-recent")),
        config(&format!("{base}-held")),
        format!("{base}-paused"),
    );
    let old_token = token_of_a_cycle(&provider, &old).await;
    // Held past the prune, with a lease far longer than the unused time.
    let held_guard = acquire(&provider, &held).await;
    admin("pause", provider.pause(&paused)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unlock(acquire(&provider, &recent).await).await;
    // Other tests' rows on this table may go too: look at ours.
    assert!(provider.has_row(old.name()).await);
    assert!(provider.prune_unused(Duration::from_secs(1)).await >= 1);
    assert!(
        !provider.has_row(old.name()).await,
        "an unused lock's row stayed"
    );
    assert!(
        provider.has_row(recent.name()).await,
        "a recently used lock was pruned"
    );
    assert!(
        provider.has_held_row(held.name()).await,
        "a held lock was pruned"
    );
    assert!(state(&provider, &paused).await.paused, "a pause was pruned");
    // Everything unused now: the recent row, never the held one.
    assert!(provider.prune_unused(Duration::ZERO).await >= 1);
    assert!(!provider.has_row(recent.name()).await);
    assert!(
        provider.has_held_row(held.name()).await,
        "a held lock was pruned"
    );
    let again_token = token_of_a_cycle(&provider, &old).await;
    assert!(again_token > old_token, "{again_token} after {old_token}");
    unlock(held_guard).await;
    admin("resume", provider.resume(&paused)).await;
}

/// A lock whose row was pruned and then made again, and later taken, by
/// ShedLock for Java (four columns, the fencing column at its default or
/// untouched) is taken with a token above every earlier one: the clock is
/// the counter's floor.
async fn tokens_rise_after_prune_and_a_java_insert<P: AdminProvider + Prune>(make: impl Make<P>) {
    let provider = make.one().await;
    let lock = config(&unique_name("java-insert"));
    let before = token_of_a_cycle(&provider, &lock).await;
    // Past the release's millisecond, which prune compares by.
    tokio::time::sleep(Duration::from_millis(5)).await;
    provider.prune_unused(Duration::ZERO).await;
    assert!(
        !provider.has_row(lock.name()).await,
        "the row was not pruned"
    );
    provider.insert_as_java(lock.name()).await;
    let after = token_of_a_cycle(&provider, &lock).await;
    assert!(after > before, "token {after} after {before}");
    // And after ShedLock for Java takes and releases it by an update.
    provider.update_as_java(lock.name()).await;
    let last = token_of_a_cycle(&provider, &lock).await;
    assert!(last > after, "token {last} after {after}");
}

/// One `#[tokio::test]` per case, for the provider `$make` gives; kit
/// cases (`kit::`) and this file's own.
macro_rules! admin_cases {
    ($make:expr; kit: $($kit:ident),*; own: $($own:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $kit() {
                shedlock_test_support::kinds::$kit($make).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $own() {
                crate::$own($make).await;
            }
        )*
    };
}

/// A module `$store` of the cases, on a table (or file) of its own.
macro_rules! admin_tests {
    ($store:ident, $provider:ty) => {
        mod $store {
            crate::support::provider_on_own_table!($store, $provider, "admin");

            admin_cases!(provider;
                kit:
                    pause_and_resume_an_ordinary_lock,
                    pause_keeps_current_holders,
                    waiting_job_starts_after_resume,
                    capacity_zero_pauses_and_resume_restores;
                own:
                    a_paused_lock_is_skipped_until_resumed,
                    a_paused_job_does_not_run,
                    a_lock_paused_by_default_runs_once_given_a_capacity,
                    the_state_shows_the_holder_of_the_row,
                    the_list_holds_held_and_configured_locks_sorted,
                    force_release_ends_the_lease,
                    bad_names_and_capacities_are_refused,
                    prune_deletes_only_the_rows_of_unused_locks,
            );
        }
    };
}

/// The token case on a table of its own: its prune (of every unused row)
/// stays away from the prune case's rows.
macro_rules! token_tests {
    ($store:ident, $provider:ty) => {
        mod $store {
            crate::support::provider_on_own_table!($store, $provider, "javatoken");

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tokens_rise_after_prune_and_a_java_insert() {
                crate::tokens_rise_after_prune_and_a_java_insert(provider).await;
            }
        }
    };
}

mod tokens {
    token_tests!(postgres, shedlock_sql::PostgresLockProvider);
    token_tests!(mysql, shedlock_sql::MySqlLockProvider);
    token_tests!(sqlite, shedlock_sql::SqliteLockProvider);
}

admin_tests!(postgres, shedlock_sql::PostgresLockProvider);
admin_tests!(mysql, shedlock_sql::MySqlLockProvider);
admin_tests!(sqlite, shedlock_sql::SqliteLockProvider);
