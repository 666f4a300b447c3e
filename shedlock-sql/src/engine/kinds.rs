//! Lock kinds on the SQL tables: shared and counted holders in
//! `<table>_holders`, exclusive waiters in `<table>_waiters`, and ShedLock's
//! row of the name as the shared marker (see [`SHARED_MARKER`]).
//!
//! Every operation is one transaction that first locks the name's row of
//! ShedLock's table, so one name's acquisitions, extensions and releases
//! run one after another, and exclusive acquisitions (which update that
//! row) wait for them: permits never exceed the capacity, and an exclusive
//! holder never runs beside shared ones. The marker's lease always ends with
//! the latest of the shared holders', so exclusive acquisitions (ShedLock
//! for Java's too) find the row held until the last shared holder is done.
//!
//! [`SHARED_MARKER`]: crate::dialect::SHARED_MARKER

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::pool::Checkout;
use shedlock_core::{FinishedRun, LockHolder, LockMode, LockState, Waiter};
use sqlx::Database;

use super::runner::execute;
use super::runs::record_in;
use super::{Failure, LeaseParams, LeaseRow, SqlEngine, answer, taken};
use crate::dialect::{Dialect, LeaseParam, Statement, Statements};
use crate::driver::Driver;
use crate::table::holder_of;

/// What the `state` statement answers for one name.
struct KindState {
    exclusive_held: bool,
    stored_capacity: Option<i64>,
    permits_held: i64,
    waiters: i64,
}

/// One answer row of `holders_of` or `holders`: `locked_by`, `locked_at` in
/// milliseconds since 1970, the lease's time left in milliseconds, the
/// token, the permits, the renewals, milliseconds since the last renewal
/// (or the acquisition), and the name.
pub(super) struct HolderRow {
    pub(super) name: String,
    pub(super) holder: LockHolder,
}

impl HolderRow {
    pub(super) fn read<DB: Driver>(row: &DB::Row) -> Result<HolderRow, sqlx::Error> {
        let millis =
            |value: Option<i64>| value.map(|ms| Duration::from_millis(ms.max(0).unsigned_abs()));
        let permits = DB::int(row, 4)?.unwrap_or(1);
        let renewals = DB::int(row, 5)?.and_then(|renewals| u64::try_from(renewals).ok());
        Ok(HolderRow {
            name: DB::text(row, 7)?.unwrap_or_default(),
            holder: LockHolder {
                locked_by: holder_of(&DB::text(row, 0)?.unwrap_or_default()).to_owned(),
                locked_at: DB::int(row, 1)?
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
                lease_left: millis(DB::int(row, 2)?),
                mode: LockMode::Shared {
                    permits: u32::try_from(permits).unwrap_or(u32::MAX),
                },
                fencing_token: DB::int(row, 3)?.and_then(|token| u64::try_from(token).ok()),
                renewed_ago: millis(DB::int(row, 6)?),
                renewals,
            },
        })
    }
}

impl<D: Dialect> SqlEngine<D> {
    /// Takes `permits` of `lease.name` if no exclusive holder holds it, no
    /// exclusive waiter holds a place, and the permits held with these stay
    /// within the capacity (stored, else `default_capacity`, else no
    /// limit); `Ok(Some(token))`: taken.
    pub(super) async fn acquire_shared(
        &self,
        connection: &mut Checkout<D::Db>,
        statements: &Statements,
        lease: &LeaseRow,
        (lock_at_most_for, default_capacity): (Duration, Option<u32>),
        timeout: Duration,
    ) -> Result<Option<u64>, Failure> {
        let kinds = &statements.kinds;
        let permits = lease.permits.unwrap_or(1);
        // In the steady state the name has a row to lock. Only when there is
        // none (a name's first use, or its row pruned) is one inserted and
        // everything done again: nothing may be decided on a row this
        // transaction has not locked, as an exclusive acquisition could
        // insert it in between. The insert is a statement of its own, as two
        // transactions inserting one name could deadlock on it.
        for make_row in [false, true] {
            let params = LeaseParams {
                lock_at_most_for,
                permits,
                ..LeaseParams::of_lease(lease)
            };
            if make_row {
                execute::<D>(&mut **connection, &kinds.ensure_row, &params, timeout).await?;
            }
            let mut transaction = Self::begin(connection, timeout).await?;
            if !lock_row::<D>(&mut transaction, &kinds.lock_row, &params, timeout).await? {
                answer(timeout, transaction.rollback()).await?;
                continue;
            }
            let state = read_state::<D>(&mut *transaction, &kinds.state, &params, timeout).await?;
            let capacity = state.stored_capacity.or(default_capacity.map(i64::from));
            let refused = state.exclusive_held
                || state.waiters > 0
                || capacity
                    .is_some_and(|capacity| state.permits_held + i64::from(permits) > capacity);
            if refused {
                answer(timeout, transaction.rollback()).await?;
                return Ok(None);
            }
            execute::<D>(&mut *transaction, &kinds.take, &params, timeout).await?;
            let row = answer(
                timeout,
                D::Db::fetch_optional(&mut *transaction, &kinds.token.sql, params.of(&kinds.token)),
            )
            .await?;
            let token = super::token_of::<D>(row).map_err(Failure::of)?;
            let params = LeaseParams {
                holder_token: Some(token),
                ..params
            };
            for statement in [&kinds.drop_ended, &kinds.join, &kinds.settle] {
                execute::<D>(&mut *transaction, statement, &params, timeout).await?;
            }
            // Its answer lost, the commit may have gone through: the caller
            // releases what it may have taken.
            answer(timeout, transaction.commit())
                .await
                .map_err(|failure| Failure {
                    unanswered: true,
                    ..failure
                })?;
            return taken(Ok(token));
        }
        // The row was deleted again right after it was made (`prune`, or by
        // hand): nothing taken this time.
        Ok(None)
    }

    /// Shortens the shared lease `lease` as `Statements::release` does and
    /// records `run`, if given, in the same transaction (as lost when the
    /// lease had ended); true when it was still live.
    pub(super) async fn release_shared(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        keep_for: Duration,
        run: Option<&FinishedRun>,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let kinds = &statements.kinds;
        let params = match run {
            Some(run) => LeaseParams::of_run(lease, run),
            None => LeaseParams::of_lease(lease),
        };
        let params = LeaseParams { keep_for, ..params };
        let mut connection = self.checkout(timeout).await?;
        let mut transaction = Self::begin(&mut connection, timeout).await?;
        execute::<D>(&mut *transaction, &kinds.lock_row, &params, timeout).await?;
        // Released only while the marker was still live: a lease that ended
        // between the two statements was lost.
        let released = execute::<D>(&mut *transaction, &kinds.release, &params, timeout).await?
            == 1
            && execute::<D>(&mut *transaction, &kinds.settle, &params, timeout).await? == 1;
        if released && let Some(notify) = &kinds.notify {
            execute::<D>(&mut *transaction, notify, &params, timeout).await?;
        }
        if run.is_some() {
            record_in::<D>(&mut *transaction, statements, params, released, timeout).await?;
        }
        answer(timeout, transaction.commit()).await?;
        Ok(released)
    }

    /// Queues `waiter` for `name`, or renews its place.
    pub(super) async fn queue(
        &self,
        statements: &Statements,
        name: &str,
        waiter: &Waiter,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let params = LeaseParams {
            waiter: waiter.id(),
            hold_place_for: waiter.hold_place_for(),
            ..LeaseParams::of_name(name)
        };
        self.update(&statements.kinds.queue, params, timeout)
            .await
            .map(drop)
    }

    /// Takes `waiter` (and lapsed places) out of `name`'s queue.
    pub(super) async fn dequeue(
        &self,
        statements: &Statements,
        name: &str,
        waiter: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let params = LeaseParams {
            waiter,
            ..LeaseParams::of_name(name)
        };
        self.update(&statements.kinds.dequeue, params, timeout)
            .await
            .map(drop)
    }
}

/// Adds the shared holders in `holders` and the waiter counts in `waiters`
/// to the states of their names (a state for a name not in `states` yet).
pub(super) fn merge_kinds(
    states: &mut Vec<LockState>,
    holders: Vec<HolderRow>,
    mut waiters: HashMap<String, u32>,
) {
    let mut index: HashMap<String, usize> = states
        .iter()
        .enumerate()
        .map(|(at, state)| (state.name.clone(), at))
        .collect();
    let mut state_of = |states: &mut Vec<LockState>, name: String| {
        *index.entry(name.clone()).or_insert_with(|| {
            states.push(LockState {
                name,
                holders: Vec::new(),
                capacity: None,
                paused: false,
                exclusive_waiters: 0,
            });
            states.len() - 1
        })
    };
    for row in holders {
        let at = state_of(states, row.name);
        states[at].holders.push(row.holder);
    }
    for (name, count) in waiters.drain() {
        let at = state_of(states, name);
        states[at].exclusive_waiters = count;
    }
}

/// Reads the `state` statement's one row.
async fn read_state<D: Dialect>(
    connection: &mut <D::Db as Database>::Connection,
    statement: &Statement<crate::dialect::LeaseParam>,
    params: &LeaseParams<'_, D>,
    timeout: Duration,
) -> Result<KindState, Failure> {
    let row = answer(
        timeout,
        D::Db::fetch_optional(connection, &statement.sql, params.of(statement)),
    )
    .await?
    .ok_or_else(|| Failure::of(sqlx::Error::RowNotFound))?;
    let int = |index| D::Db::int(&row, index).map_err(Failure::of);
    Ok(KindState {
        exclusive_held: int(0)?.unwrap_or(0) > 0,
        stored_capacity: int(1)?,
        permits_held: int(2)?.unwrap_or(0),
        waiters: int(3)?.unwrap_or(0),
    })
}

/// The waiters this provider queued, until their places lapse: an
/// acquisition by one of them takes it out of the queue (one statement
/// only after a wait that queued).
#[derive(Default)]
pub(crate) struct QueuedWaiters {
    places: std::sync::Mutex<HashMap<String, Instant>>,
}

impl QueuedWaiters {
    /// `waiter` holds a place until `hold_place_for` from now; lapsed
    /// places are forgotten.
    pub(crate) fn queued(&self, waiter: &Waiter) {
        let now = Instant::now();
        let mut places = self
            .places
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        places.retain(|_, until| *until > now);
        places.insert(waiter.id().to_owned(), now + waiter.hold_place_for());
    }

    /// Whether `waiter` had queued (it is forgotten now).
    pub(crate) fn take(&self, waiter: &Waiter) -> bool {
        let mut places = self
            .places
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        places.remove(waiter.id()).is_some()
    }
}

/// Locks the name's row of `statement`'s table until the transaction ends;
/// false when there is none.
pub(super) async fn lock_row<D: Dialect>(
    transaction: &mut <D::Db as Database>::Connection,
    statement: &Statement<LeaseParam>,
    params: &LeaseParams<'_, D>,
    timeout: Duration,
) -> Result<bool, Failure> {
    Ok(locked_row(transaction, statement, params, timeout)
        .await?
        .is_some())
}

/// [`lock_row`], answering the row locked (what `statement` selects of it).
pub(super) async fn locked_row<D: Dialect>(
    transaction: &mut <D::Db as Database>::Connection,
    statement: &Statement<LeaseParam>,
    params: &LeaseParams<'_, D>,
    timeout: Duration,
) -> Result<Option<<D::Db as Database>::Row>, Failure> {
    let values = params.of(statement);
    answer(
        timeout,
        D::Db::fetch_optional(transaction, &statement.sql, values),
    )
    .await
}
