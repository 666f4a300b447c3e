//! The statement runner: one statement (or transaction) at a time on a
//! pooled connection, its values bound from the one parameter map.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use super::pool::Checkout;
use shedlock_core::FinishedRun;
use sqlx::{Connection, Database, Pool, Transaction};

use crate::dialect::{Acquire, Dialect, LeaseParam, Statement, Statements, TableParam, Token};
use crate::driver::{Driver, Value};
use crate::table::{TableName, holder_of};

use super::*;

/// acquisition, see `InFlight`): no timer of their own.
pub(super) const UNBOUNDED: Duration = Duration::MAX;

/// Waits up to `timeout` for a statement's answer ([`UNBOUNDED`]: as long
/// as it takes). A timeout or a broken connection after it was sent leaves
/// open whether it ran.
pub(crate) async fn answer<T>(
    timeout: Duration,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, Failure> {
    let answered = if timeout == UNBOUNDED {
        Ok(statement.await)
    } else {
        tokio::time::timeout(timeout, statement).await
    };
    match answered {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            let unanswered = matches!(
                err,
                sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
            );
            Err(Failure {
                unanswered,
                ..Failure::of(err)
            })
        }
        Err(_) => Err(Failure {
            unanswered: true,
            what_happened: format!("no answer within {timeout:?}"),
            cause: None,
        }),
    }
}

/// A token the database returned as a signed integer (never negative: a
/// counter from 1, or microseconds since 1970).
pub(crate) fn token(value: i64) -> u64 {
    value.max(1).unsigned_abs()
}

/// The token of an acquisition that went through. Failing to read it leaves
/// a lease taken, so the failure counts as unanswered: the lease is released.
pub(crate) fn taken(value: Result<i64, sqlx::Error>) -> Result<Option<u64>, Failure> {
    value
        .map(|value| Some(token(value)))
        .map_err(|err| Failure {
            unanswered: true,
            ..Failure::of(err)
                .explaining("the lock was taken but its fencing token could not be read")
        })
}

/// The lock operations on one pool, written once: the dialect `D` gives
/// the statements, their parameters' order and the durations' encoding.
pub(crate) struct SqlEngine<D: Dialect> {
    pub(super) pool: Pool<D::Db>,
    /// Server connections of a runtime that is gone are closed before use.
    pub(super) runtimes: runtimes::RuntimeWatch,
}

impl<D: Dialect> SqlEngine<D> {
    /// A connection of the pool within `timeout`. From an SQLite file's
    /// pool, an idle connection is taken at once, without the pool's check
    /// (a round trip to the connection's worker thread) or a timer: there is
    /// no server that could have closed it.
    pub(crate) async fn checkout(&self, timeout: Duration) -> Result<Checkout<D::Db>, Failure> {
        if !D::SERVER {
            if let Some(connection) = self.pool.try_acquire() {
                return Ok(Checkout::new(connection));
            }
        } else if self.runtimes.left_a_gone_runtime() {
            // Idle ones only: taken without the ping, and closed unused.
            while let Some(connection) = self.pool.try_acquire() {
                drop(connection.detach());
            }
        }
        checkout(&self.pool, timeout).await
    }

    /// The rows `statement` answers for `name` (every name when empty),
    /// each read by `read`.
    pub(crate) async fn fetch_rows<T>(
        &self,
        statement: &Statement<LeaseParam>,
        name: &str,
        timeout: Duration,
        read: impl Fn(&<D::Db as Database>::Row) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let values = LeaseParams::<D>::of_name(name).of(statement);
        let rows = answer(
            timeout,
            D::Db::fetch_all(&mut connection, &statement.sql, values),
        )
        .await?;
        drop(connection);
        rows.iter()
            .map(read)
            .collect::<Result<_, _>>()
            .map_err(Failure::of)
    }

    /// The names of the columns of `table`; none when there is no such table.
    pub(super) async fn columns(
        &self,
        table: &TableName,
        timeout: Duration,
    ) -> Result<Vec<String>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let columns = D::columns();
        let qualified = table.to_string();
        let values = columns.values(|param| match param {
            TableParam::Qualified => Value::Str(&qualified),
            TableParam::Schema => Value::OptionalStr(table.schema()),
            TableParam::Table => Value::Str(table.table()),
        });
        let rows = answer(
            timeout,
            D::Db::fetch_all(&mut connection, &columns.sql, values),
        )
        .await?;
        rows.iter()
            .map(|row| D::Db::text(row, 0).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::of)
    }

    /// Runs `create` (`CREATE TABLE IF NOT EXISTS` of `table`).
    pub(super) async fn create_table(
        &self,
        table: &TableName,
        create: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut connection = self.checkout(timeout).await?;
        let created = answer(timeout, D::Db::execute_unprepared(&mut connection, create)).await;
        drop(connection);
        match created {
            Ok(_) => Ok(()),
            // Processes creating it at once: one of them may lose a race in
            // the catalog (PostgreSQL's unique violation on pg_type), yet
            // the table is there.
            Err(failure) => match self.columns(table, timeout).await {
                Ok(columns) if !columns.is_empty() => Ok(()),
                _ => Err(failure),
            },
        }
    }

    /// Takes `lease.name` for `lease` if its lease has ended (or it has no row
    /// yet) and its capacity (stored, else `default_capacity`) is not 0;
    /// `Ok(Some(token))`: taken, `Ok(None)`: held or paused. `timeout` bounds
    /// the wait for each answer (the exclusive statement's; [`UNBOUNDED`]
    /// where the caller bounds the whole). A shared lease is taken as
    /// `acquire_shared` says, each of its statements bounded by
    /// `statement_timeout`, as is its transaction on the server's side.
    pub(super) async fn acquire(
        &self,
        connection: &mut Checkout<D::Db>,
        statements: &Statements,
        lease: &LeaseRow,
        (lock_at_most_for, default_capacity): (Duration, Option<u32>),
        (timeout, statement_timeout): (Duration, Duration),
    ) -> Result<Option<u64>, Failure> {
        if lease.permits.is_some() {
            let defaults = (lock_at_most_for, default_capacity);
            return self
                .acquire_shared(connection, statements, lease, defaults, statement_timeout)
                .await;
        }
        let params = LeaseParams::<D> {
            lock_at_most_for,
            // Exclusive holders take the whole lock: only a capacity of 0 (paused) matters.
            capacity: default_capacity.unwrap_or(1),
            tick: lease.tick,
            ..LeaseParams::of_lease(lease)
        };
        if lease.tick.is_some() {
            return self
                .claim_tick(connection, statements, lease, &params, statement_timeout)
                .await;
        }
        Self::acquire_exclusive(connection, statements, &params, timeout).await
    }

    /// The exclusive acquisition's statements on `connection` (a
    /// transaction's, for a tick's claim): the token when taken.
    pub(super) async fn acquire_exclusive(
        connection: &mut <D::Db as Database>::Connection,
        statements: &Statements,
        params: &LeaseParams<'_, D>,
        timeout: Duration,
    ) -> Result<Option<u64>, Failure> {
        for step in &statements.acquire {
            match step {
                Acquire::Returning(statement) => {
                    let row = answer(
                        timeout,
                        D::Db::fetch_optional(
                            &mut *connection,
                            &statement.sql,
                            params.of(statement),
                        ),
                    )
                    .await?;
                    if row.is_some() {
                        return taken(token_of::<D>(row));
                    }
                }
                Acquire::Counting(statement, token) => {
                    let done = answer(
                        timeout,
                        D::Db::execute(&mut *connection, &statement.sql, params.of(statement)),
                    )
                    .await?;
                    let counts = D::counts(&done);
                    if counts.rows_affected != 1 {
                        continue;
                    }
                    return match token {
                        Token::LastInsertId => {
                            taken(Ok(i64::try_from(counts.last_insert_id).unwrap_or(i64::MAX)))
                        }
                        // The lock is taken: a lost token must release it.
                        Token::Clock => {
                            let clock = format!("SELECT {}", D::KIND.clock_micros());
                            let row = answer(
                                timeout,
                                D::Db::fetch_optional(&mut *connection, &clock, Vec::new()),
                            )
                            .await
                            .map_err(|failure| Failure {
                                unanswered: true,
                                ..failure
                            })?;
                            taken(token_of::<D>(row))
                        }
                    };
                }
            }
        }
        Ok(None)
    }

    /// How long the current lease of `name` has left (zero once ended);
    /// `None` when there is no row.
    pub(super) async fn lease_left(
        &self,
        statements: &Statements,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<Duration>, Failure> {
        let mut connection = self.checkout(timeout).await?;
        let statement = &statements.lease_left;
        let values = LeaseParams::<D>::of_name(name).of(statement);
        let row = answer(
            timeout,
            D::Db::fetch_optional(&mut connection, &statement.sql, values),
        )
        .await?;
        let left = row
            .map(|row| D::Db::int(&row, 0))
            .transpose()
            .map_err(Failure::of)?;
        Ok(left.flatten().map(|left| D::DURATIONS.decode(left)))
    }

    /// Runs `statement` of `lease` on a connection of its own; true when it
    /// matched the lease's row (still this lease's and live).
    pub(super) async fn update(
        &self,
        statement: &Statement<LeaseParam>,
        params: LeaseParams<'_, D>,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        let mut connection = self.checkout(timeout).await?;
        // MySQL's client counts matched rows (CLIENT_FOUND_ROWS), not changed ones.
        Ok(execute::<D>(&mut connection, statement, &params, timeout).await? == 1)
    }

    /// Sets `lock_until = LEAST(lock_until, GREATEST(locked_at +
    /// lock_at_least_for, now + keep_for))` if the lease is `lease`'s and has not ended.
    pub(super) async fn release(
        &self,
        statements: &Statements,
        lease: &LeaseRow,
        keep_for: Duration,
        timeout: Duration,
    ) -> Result<bool, Failure> {
        if lease.permits.is_some() {
            return self
                .release_shared(statements, lease, keep_for, None, timeout)
                .await;
        }
        let params = LeaseParams {
            keep_for,
            ..LeaseParams::of_lease(lease)
        };
        self.update(&statements.release, params, timeout).await
    }
}

/// The token in the first column of `row`.
pub(super) fn token_of<D: Dialect>(
    row: Option<<D::Db as Database>::Row>,
) -> Result<i64, sqlx::Error> {
    let row = row.ok_or(sqlx::Error::RowNotFound)?;
    D::Db::int(&row, 0)?.ok_or_else(|| sqlx::Error::Decode("the token is NULL".into()))
}

/// The one parameter map of the lease statements (ShedLock's shape): each
/// statement takes from it what its placeholders ask, in its own order.
pub(super) struct LeaseParams<'a, D> {
    pub(super) name: &'a str,
    pub(super) locked_by: &'a str,
    pub(super) lock_at_most_for: Duration,
    pub(super) lock_at_least_for: Duration,
    pub(super) keep_for: Duration,
    /// An operator's capacity, or an acquisition's default one.
    pub(super) capacity: u32,
    /// How long a pruned lock has not been used, at least.
    pub(super) unused_for: Duration,
    /// `locked_by` without the acquisition's id.
    pub(super) holder: &'a str,
    /// The recorded run: how long it took, how it ended, its token.
    pub(super) run_millis: i64,
    pub(super) outcome: &'static str,
    pub(super) run_token: Option<i64>,
    /// A shared holder's permits and token.
    pub(super) permits: u32,
    pub(super) holder_token: Option<i64>,
    /// An exclusive waiter and how long its place lasts.
    pub(super) waiter: &'a str,
    pub(super) hold_place_for: Duration,
    /// The tick claimed (ms since 1970), if any.
    pub(super) tick: Option<i64>,
    pub(super) dialect: PhantomData<D>,
}

impl<'a, D: Dialect> LeaseParams<'a, D> {
    /// The map of `row`'s statements, with no durations yet.
    pub(super) fn of_lease(row: &'a LeaseRow) -> Self {
        LeaseParams {
            locked_by: &row.locked_by,
            holder: holder_of(&row.locked_by),
            lock_at_least_for: row.lock_at_least_for,
            ..Self::of_name(&row.name)
        }
    }

    /// The map of a statement on `name`, whoever holds it.
    pub(super) fn of_name(name: &'a str) -> Self {
        LeaseParams {
            name,
            locked_by: "",
            lock_at_most_for: Duration::ZERO,
            lock_at_least_for: Duration::ZERO,
            keep_for: Duration::ZERO,
            capacity: 1,
            unused_for: Duration::MAX,
            holder: "",
            run_millis: 0,
            outcome: "",
            run_token: None,
            permits: 1,
            holder_token: None,
            waiter: "",
            hold_place_for: Duration::ZERO,
            tick: None,
            dialect: PhantomData,
        }
    }

    /// The map of `row`'s statements recording `run`.
    pub(super) fn of_run(row: &'a LeaseRow, run: &FinishedRun) -> Self {
        LeaseParams {
            run_millis: i64::try_from(run.duration.as_millis()).unwrap_or(i64::MAX),
            outcome: run.outcome.as_str(),
            run_token: run
                .fencing_token
                .and_then(|token| i64::try_from(token).ok()),
            ..Self::of_lease(row)
        }
    }

    /// The values of `statement`'s parameters, in its order.
    pub(super) fn of(&self, statement: &Statement<LeaseParam>) -> Vec<Value<'a>> {
        statement.values(|param| match param {
            LeaseParam::Name => Value::Str(self.name),
            LeaseParam::LockedBy => Value::Str(self.locked_by),
            LeaseParam::LockAtMostFor => D::DURATIONS.encode(self.lock_at_most_for),
            LeaseParam::LockAtLeastFor => D::DURATIONS.encode(self.lock_at_least_for),
            LeaseParam::KeepFor => D::DURATIONS.encode(self.keep_for),
            LeaseParam::Capacity => Value::Int(i64::from(self.capacity)),
            LeaseParam::UnusedFor => D::DURATIONS.encode(self.unused_for),
            LeaseParam::Holder => Value::Str(self.holder),
            LeaseParam::RunMillis => Value::Int(self.run_millis),
            LeaseParam::Outcome => Value::Str(self.outcome),
            LeaseParam::RunToken => Value::OptionalInt(self.run_token),
            LeaseParam::Permits => Value::Int(i64::from(self.permits)),
            LeaseParam::HolderToken => Value::OptionalInt(self.holder_token),
            LeaseParam::Waiter => Value::Str(self.waiter),
            LeaseParam::HoldPlaceFor => D::DURATIONS.encode(self.hold_place_for),
            LeaseParam::Tick => Value::OptionalInt(self.tick),
        })
    }
}

/// How much longer than the database's own bound on a statement of
/// `change` its answer is awaited: the caller gets the database's
/// cancellation, and the statement is over when the call returns.
const SERVER_CANCEL_GRACE: Duration = Duration::from_secs(1);

impl<D: Dialect> SqlEngine<D> {
    /// Begins a lock-kinds transaction on `connection` (with the dialect's
    /// isolation level, if it sets one).
    pub(super) async fn begin<'c>(
        connection: &'c mut Checkout<D::Db>,
        timeout: Duration,
    ) -> Result<Transaction<'c, D::Db>, Failure> {
        Self::begin_with(
            connection,
            D::kinds_begin(timeout),
            D::KINDS_ISOLATION,
            timeout,
        )
        .await
    }

    /// Begins a transaction on `connection` with `begin` (`None`: the
    /// driver's `BEGIN`), after setting `isolation` for it if given. Cut off
    /// before the answer, the connection is closed (see [`Checkout`]).
    pub(super) async fn begin_with<'c>(
        connection: &'c mut Checkout<D::Db>,
        begin: Option<String>,
        isolation: Option<&'static str>,
        timeout: Duration,
    ) -> Result<Transaction<'c, D::Db>, Failure> {
        let (connection, beginning) = connection.parts();
        *beginning = true;
        if let Some(isolation) = isolation
            && let Err(failure) =
                answer(timeout, D::Db::execute_unprepared(connection, isolation)).await
        {
            *beginning = failure.unanswered;
            return Err(failure);
        }
        let begun = match begin {
            Some(begin) => answer(timeout, Connection::begin_with(&mut **connection, begin)).await,
            None => answer(timeout, Connection::begin(&mut **connection)).await,
        };
        // Answered, a transaction or a refusal: the driver knows where it stands.
        *beginning = begun.as_ref().is_err_and(|failure| failure.unanswered);
        begun
    }

    /// Runs `statements` in order in one transaction; the rows each
    /// changed. The database bounds each statement to `timeout` where it
    /// can (`Dialect::bounded_begin`, `Dialect::bounded_statement`), so one
    /// that runs out of time is cancelled there, with the row locks it
    /// took, rather than left running; its answer (that cancellation) is
    /// awaited [`SERVER_CANCEL_GRACE`] longer. With `batch`, a statement
    /// that changed `batch` rows is sent again until it changes fewer.
    pub(super) async fn change(
        &self,
        statements: &[&Statement<LeaseParam>],
        batch: Option<u64>,
        params: LeaseParams<'_, D>,
        timeout: Duration,
    ) -> Result<Vec<u64>, Failure> {
        let awaited = if D::SERVER {
            timeout.saturating_add(SERVER_CANCEL_GRACE)
        } else {
            timeout
        };
        let mut connection = self.checkout(timeout).await?;
        let mut transaction = Self::begin_with(
            &mut connection,
            D::bounded_begin(timeout),
            D::KINDS_ISOLATION,
            timeout,
        )
        .await?;
        let mut changed = Vec::with_capacity(statements.len());
        for statement in statements {
            let sql = D::bounded_statement(&statement.sql, timeout);
            let mut rows = 0;
            loop {
                let values = params.of(statement);
                let done =
                    match answer(awaited, D::Db::execute(&mut *transaction, &sql, values)).await {
                        Ok(done) => D::counts(&done).rows_affected,
                        Err(failure) => {
                            // The locks of the statements before it go now, not
                            // when the connection is next used. (One whose answer
                            // never came may still run: the rollback would wait.)
                            if !failure.unanswered {
                                let _ = answer(timeout, transaction.rollback()).await;
                            }
                            return Err(failure);
                        }
                    };
                rows += done;
                if batch.is_none_or(|batch| done < batch) {
                    break;
                }
            }
            changed.push(rows);
        }
        answer(awaited, transaction.commit()).await?;
        Ok(changed)
    }
}

/// Runs `statement` with `params`; the rows it changed (matched, on MySQL).
pub(super) async fn execute<D: Dialect>(
    connection: &mut <D::Db as Database>::Connection,
    statement: &Statement<crate::dialect::LeaseParam>,
    params: &LeaseParams<'_, D>,
    timeout: Duration,
) -> Result<u64, Failure> {
    let done = answer(
        timeout,
        D::Db::execute(connection, &statement.sql, params.of(statement)),
    )
    .await?;
    Ok(D::counts(&done).rows_affected)
}
