//! What one database brings to the engine, as data: its statements, the
//! order of their parameters and how durations are written (the shape of
//! ShedLock's `SqlStatementsSource`). Everything that runs them is in
//! `engine.rs`, once.

// A build without some databases leaves the variants only they use unused.
#![cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]

use std::sync::Arc;
use std::time::Duration;

use shedlock_core::ReleaseNotifiers;
use sqlx::{Connection, Database, Pool};

use crate::driver::{Driver, Value};
use crate::fragments::SqlKind;
use crate::releases::ReleaseFeed;
use crate::statements::Tables;
use crate::table::TableName;

/// The settings a connection of `D`'s database is opened with.
pub(crate) type ConnectOptionsOf<D> =
    <<<D as Dialect>::Db as Database>::Connection as Connection>::Options;

/// One database: its sqlx driver, its name and its SQL text.
// Sealed: public only as the supertrait of `SqlDatabase`, in a private
// module, so no other crate can name it, implement it or use its items (the
// crate's own types in its signatures stay the crate's).
#[allow(private_interfaces, private_bounds)]
pub trait Dialect: Sized + Send + Sync + 'static {
    /// The sqlx database the statements are sent to.
    type Db: Driver;

    /// Which database it is: its fragments, names and column types.
    const KIND: SqlKind;

    /// The provider's name in `Debug` output.
    const PROVIDER: &'static str = Self::KIND.provider();

    /// The store's name in errors and scopes: "postgres", "mysql", "sqlite".
    const STORE: &'static str = Self::KIND.store();

    /// The database's name in messages: "PostgreSQL", ...
    const TITLE: &'static str = Self::KIND.title();

    /// The shape of a URL `connect` takes, for the message on a malformed one.
    const URL_SHAPE: &'static str = Self::KIND.url_shape();

    /// Whether connections go over the network to a server, which may close
    /// them while they are idle (so a pool should check them before use).
    const SERVER: bool = !matches!(Self::KIND, SqlKind::Sqlite);

    /// How durations are sent, and how `lease_left` answers.
    const DURATIONS: DurationEncoding = Self::KIND.durations();

    /// Where prune statements delete at most this many rows each (`LIMIT`).
    const PRUNE_BATCH: Option<u64> = None;

    // Statements whose shape differs.

    /// Tried in order until one takes the lock: one upsert by default.
    fn acquire(tables: &Tables) -> Vec<Acquire> {
        let upsert = crate::statements::upsert_acquisition::<Self>(tables);
        vec![Acquire::Returning(crate::template::compile::<Self>(
            &upsert,
        ))]
    }

    /// `update` (a release, a force-release: an `UPDATE` of the lock row),
    /// announcing the released name where the database can.
    fn announced(tables: &Tables, update: &str) -> String {
        let _ = tables;
        update.to_owned()
    }

    /// How a release records its run.
    fn release_with_run(tables: &Tables) -> ReleaseRun {
        let _ = tables;
        ReleaseRun::Transaction
    }

    /// Locks the name's row until the transaction ends, answering its
    /// `column` (an expression: `1` to read nothing of it).
    fn lock_row(table: &TableName, column: &str) -> String {
        format!("SELECT {column} FROM {table} WHERE name = :name FOR UPDATE")
    }

    /// Announces a release of `:name` to other processes, where the database can.
    fn notify(tables: &Tables) -> Option<String> {
        let _ = tables;
        None
    }

    /// The names of the columns of a table (no row when there is no such table).
    fn columns() -> Statement<TableParam>;

    /// Sent before a lock-kinds transaction begins, where the database's
    /// default isolation would take more locks than the transaction needs
    /// (MySQL's `REPEATABLE READ` locks gaps, and concurrent transactions on
    /// neighbouring names could deadlock).
    const KINDS_ISOLATION: Option<&'static str> = None;

    /// The statement that begins a lock-kinds transaction (`None`: the
    /// driver's plain `BEGIN`), where the database can bound it on its
    /// side: a client that stalls mid-transaction (a partition, a paused
    /// process) would otherwise keep the name's row locked, and every
    /// acquisition of the name waiting, until its connection dies.
    fn kinds_begin(timeout: std::time::Duration) -> Option<String> {
        let _ = timeout;
        None
    }

    /// The statement that begins a transaction of `SqlEngine::change`
    /// (operators' changes, `prune`, the record of a lost run; `None`: the
    /// driver's plain `BEGIN`), where the database can bound its
    /// statements, their waits for row locks and the transaction itself on
    /// its side to `timeout`: a statement the caller gave up on is then
    /// cancelled by the server instead of running on, holding the rows it
    /// changed.
    fn bounded_begin(timeout: Duration) -> Option<String> {
        let _ = timeout;
        None
    }

    /// `sql`, one statement of a transaction of `SqlEngine::change`,
    /// bounded to `timeout` on the server where the database bounds
    /// statements one by one (see [`bounded_begin`](Self::bounded_begin)).
    fn bounded_statement(sql: &str, timeout: Duration) -> std::borrow::Cow<'_, str> {
        let _ = timeout;
        std::borrow::Cow::Borrowed(sql)
    }

    /// Whether `column`, as the catalog names it, is the `fencing_token` column.
    fn is_fencing_column(column: &str) -> bool {
        column.eq_ignore_ascii_case("fencing_token")
    }

    /// What a statement changed, from its answer.
    fn counts(result: &<Self::Db as Database>::QueryResult) -> Counts;

    /// The server (host, port and database) or file, without credentials.
    fn server(options: &ConnectOptionsOf<Self>) -> String;

    /// How this process hears of releases of `table` made by other
    /// processes, waking `notifiers`' waiters: `None` where the database
    /// announces nothing (waiters poll, helped by lease-end hints).
    fn release_feed(
        pool: &Pool<Self::Db>,
        table: &TableName,
        notifiers: &Arc<ReleaseNotifiers>,
    ) -> Option<Arc<dyn ReleaseFeed>> {
        let _ = (pool, table, notifiers);
        None
    }
}

/// `host:port/database`: no user name, no password.
pub(crate) fn host_port_database(host: &str, port: u16, database: Option<&str>) -> String {
    format!("{host}:{port}/{}", database.unwrap_or(""))
}

/// SQL text and the parameters its placeholders take, in order.
pub struct Statement<P: 'static> {
    pub(crate) sql: String,
    pub(crate) params: Vec<P>,
}

impl<P: Copy + 'static> Statement<P> {
    /// The statement `sql`, with `params` in the order of its placeholders.
    pub(crate) fn new(sql: String, params: impl Into<Vec<P>>) -> Self {
        Statement {
            sql,
            params: params.into(),
        }
    }

    /// The values of the parameters, in order, taken from one map.
    pub(crate) fn values<'a>(&self, value: impl Fn(P) -> Value<'a>) -> Vec<Value<'a>> {
        self.params.iter().map(|&param| value(param)).collect()
    }
}

/// The parameters of the lock statements: one map for all of them
/// (ShedLock's shared parameter map), each statement taking what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseParam {
    Name,
    LockedBy,
    LockAtMostFor,
    LockAtLeastFor,
    KeepFor,
    /// The capacity an operator stores, or the one an acquisition assumes
    /// when none is stored (1, or 0 for a lock paused by default).
    Capacity,
    /// How long a lock has not been used, at least, for its row to be pruned.
    UnusedFor,
    /// Who holds the lease, without the acquisition's id (as the history shows it).
    Holder,
    /// How long the recorded run took, in whole milliseconds (`BIGINT`).
    RunMillis,
    /// How the recorded run ended: `ok`, `error`, `panic` or `lease_lost`.
    Outcome,
    /// The recorded run's fencing token (NULL: not issued).
    RunToken,
    /// A shared holder's permits.
    Permits,
    /// A shared holder's fencing token (NULL: none).
    HolderToken,
    /// An exclusive waiter's id.
    Waiter,
    /// How long a waiter's place in the queue lasts.
    HoldPlaceFor,
    /// The tick an acquisition claims, in milliseconds since 1970 (`BIGINT`).
    Tick,
}

/// The parameters of the catalog lookup of a table.
#[derive(Clone, Copy, Debug)]
pub enum TableParam {
    /// `schema.table` or `table`, as given.
    Qualified,
    /// The schema, NULL when none was given.
    Schema,
    /// The table without its schema.
    Table,
}

/// How a database takes durations, and answers with them.
#[derive(Clone, Copy, Debug)]
pub enum DurationEncoding {
    /// Whole milliseconds (rounded up), as a `BIGINT`; answers in milliseconds.
    Millis,
    /// Whole milliseconds (rounded up) in microseconds, as a `BIGINT`;
    /// answers in microseconds.
    Micros,
    /// An SQLite date modifier, `+12.345 seconds`; answers in milliseconds.
    DateModifier,
}

impl DurationEncoding {
    /// `duration` as a parameter.
    pub(crate) fn encode(self, duration: Duration) -> Value<'static> {
        let ms = millis(duration);
        match self {
            DurationEncoding::Millis => Value::Int(ms),
            DurationEncoding::Micros => Value::Int(ms.saturating_mul(1000)),
            DurationEncoding::DateModifier => {
                Value::Text(format!("+{}.{:03} seconds", ms / 1000, ms % 1000))
            }
        }
    }

    /// A duration the database answered with (negative: zero).
    pub(crate) fn decode(self, value: i64) -> Duration {
        let value = value.max(0).unsigned_abs();
        match self {
            DurationEncoding::Millis | DurationEncoding::DateModifier => {
                Duration::from_millis(value)
            }
            DurationEncoding::Micros => Duration::from_micros(value),
        }
    }
}

/// A duration in whole milliseconds, rounded up (a lease is never shorter
/// than asked).
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// The statements of one table.
pub(crate) struct Statements {
    /// Tried in order until one takes the lock; none did: it is held.
    pub(crate) acquire: Vec<Acquire>,
    /// Moves `lock_until` only while the row is still this lease's and live.
    pub(crate) extend: Statement<LeaseParam>,
    /// Shortens the lease to `lock_at_least_for` after `locked_at` (the
    /// database's clock) or `keep_for` from now, whichever is later, never
    /// lengthening it; only while the row is still this lease's and live.
    pub(crate) release: Statement<LeaseParam>,
    /// How long the current lease of a name has left, by the database's
    /// clock (negative once ended), for waiters' wake-up hints; no answer
    /// (NULL) while the lock is paused, so waiters poll rather than wake at
    /// an end that lets nobody in.
    pub(crate) lease_left: Statement<LeaseParam>,
    /// What operators read and change.
    pub(crate) admin: AdminStatements,
    /// The lock's last runs.
    pub(crate) runs: RunStatements,
    /// Shared and counted holders, exclusive waiters and renewals.
    pub(crate) kinds: KindStatements,
    /// The claims of ticks.
    pub(crate) ticks: crate::ticks::TickStatements,
}

/// What `locked_by` of ShedLock's row says while shared holders hold the
/// lock: the row's lease then lasts as long as the longest of theirs (so
/// exclusive acquisitions, ShedLock for Java's included, find it held),
/// and the holders themselves are rows of `<table>_holders`. Never a
/// holder's own value, which always has `;id=`.
pub(crate) const SHARED_MARKER: &str = "#shared-holders";

/// The statements of shared and counted locks. Each operation is one
/// transaction that first locks the name's row in ShedLock's table
/// (`lock_row`), so the acquisitions, extensions and releases of one name
/// run one after the other, and exclusive acquisitions (which change that
/// row) wait for them.
pub(crate) struct KindStatements {
    /// Inserts a free row for the name if there is none (outside the
    /// transaction, when `take` found no row to mark; then it starts again).
    pub(crate) ensure_row: Statement<LeaseParam>,
    /// Locks the name's row until the transaction ends; answers a row only
    /// when there is one (and it is locked now).
    pub(crate) lock_row: Statement<LeaseParam>,
    /// One row: 1 if an exclusive holder's lease is live (else 0), the
    /// stored capacity (NULL: none), the permits live shared holders hold,
    /// and how many exclusive waiters hold a place.
    pub(crate) state: Statement<LeaseParam>,
    /// Makes the row the shared marker, live at least `LockAtMostFor` from
    /// now, and moves its fencing counter on.
    pub(crate) take: Statement<LeaseParam>,
    /// The token of the holder just taken: the row's counter, or the clock.
    pub(crate) token: Statement<LeaseParam>,
    /// Deletes the name's holder rows whose lease ended.
    pub(crate) drop_ended: Statement<LeaseParam>,
    /// Inserts a shared holder's row.
    pub(crate) join: Statement<LeaseParam>,
    /// Renews a live shared holder's lease for `LockAtMostFor` and counts it.
    pub(crate) extend: Statement<LeaseParam>,
    /// Shortens a live shared holder's lease as `Statements::release` does.
    pub(crate) release: Statement<LeaseParam>,
    /// Sets the marker's lease end to the latest of the live holders' (now
    /// when none is left).
    pub(crate) settle: Statement<LeaseParam>,
    /// Counts a renewal of the exclusive holder `LockedBy` (its row of 0
    /// permits, made at its first renewal with its lease's end and token).
    pub(crate) renew_exclusive: Statement<LeaseParam>,
    /// Announces a release to other processes, where the database can.
    pub(crate) notify: Option<Statement<LeaseParam>>,
    /// Queues the exclusive waiter `Waiter` (or renews its place) until
    /// `HoldPlaceFor` from now.
    pub(crate) queue: Statement<LeaseParam>,
    /// Takes the waiter out of the queue, with the name's lapsed places.
    pub(crate) dequeue: Statement<LeaseParam>,
    /// The live shared holders of the name, in the columns of
    /// `engine::kinds::HolderRow`.
    pub(crate) holders_of: Statement<LeaseParam>,
    /// The live shared holders of every name, as `holders_of`.
    pub(crate) holders: Statement<LeaseParam>,
    /// The name and its number of queued exclusive waiters.
    pub(crate) waiters_of: Statement<LeaseParam>,
    /// Every name with queued exclusive waiters and their number.
    pub(crate) waiters: Statement<LeaseParam>,
    /// Ends the leases of the name's live shared holders now.
    pub(crate) end_holders: Statement<LeaseParam>,
    /// Deletes holder and waiter rows that ended more than `UnusedFor` ago.
    pub(crate) prune: [Statement<LeaseParam>; 2],
}

/// The statements of the run history (`<table>_runs`): each run is a row
/// with the database's clock as its finish, the name's last
/// [`RUN_HISTORY_LEN`](shedlock_core::RUN_HISTORY_LEN) kept.
pub(crate) struct RunStatements {
    /// How a release records its run, in the same transaction.
    pub(crate) release: ReleaseRun,
    /// Records a run (its `Outcome` given) and trims the name's history to
    /// the newest ones, in this order in one transaction.
    pub(crate) record: [Statement<LeaseParam>; 2],
    /// Records ticks no replica ran (outcome `missed`): finished at `:tick`
    /// (ms since 1970, the last missed tick), started `:run_millis` before
    /// (the first), the count in the token's place. Trimmed by `record[1]`.
    pub(crate) record_missed: Statement<LeaseParam>,
    /// The name's runs, the newest first: `started_at` and `finished_at` in
    /// milliseconds since 1970, `duration_ms`, `outcome`, `locked_by`,
    /// `fencing_token`.
    pub(crate) history: Statement<LeaseParam>,
    /// The newest run of every name, with the columns of `history` and the
    /// name last.
    pub(crate) last: Statement<LeaseParam>,
    /// Deletes the runs of names that have no row in the lock table any
    /// more (after `prune`, in its transaction).
    pub(crate) prune: Statement<LeaseParam>,
}

/// How a release records its run.
pub enum ReleaseRun {
    /// One statement releases the lease, records the run (as `lease_lost`
    /// when the lease had ended) and trims the history; it answers a row
    /// only when it released the lease.
    Combined(Statement<LeaseParam>),
    /// In one transaction: the plain release, then `RunStatements::record`
    /// with the outcome the release's answer gives.
    Transaction,
}

/// The statements of `LockAdmin`. Reads answer with the columns of
/// `engine::admin::StateRow`: `locked_by`, `locked_at` in milliseconds since 1970,
/// the lease's time left in milliseconds and its fencing token (NULLs when
/// no exclusive holder holds the lock), the stored capacity (NULL: none),
/// and the exclusive holder's renewals and milliseconds since the last
/// (NULLs before its first renewal).
pub(crate) struct AdminStatements {
    /// One row: the live lease of a name, if any, and its stored capacity.
    pub(crate) lock_state: Statement<LeaseParam>,
    /// One row per name held now or with a stored capacity, the name last.
    pub(crate) list_locks: Statement<LeaseParam>,
    /// Stores a capacity (0 pauses); storing 0 keeps the capacity from
    /// before it for the resume, storing another forgets it.
    pub(crate) set_capacity: Statement<LeaseParam>,
    /// Ends a pause, in one transaction: the first forgets a pause that had
    /// no capacity before it, the second restores the capacity from before.
    pub(crate) resume: [Statement<LeaseParam>; 2],
    /// Ends the live lease of a name now (its `lock_until` becomes now),
    /// whoever holds it.
    pub(crate) force_release: Statement<LeaseParam>,
    /// Deletes the rows whose last lease ended more than `UnusedFor` ago
    /// (so never a held one's); settings rows stay.
    pub(crate) prune: Statement<LeaseParam>,
    /// Where the prune statements (this one, `RunStatements::prune`,
    /// `KindStatements::prune`) delete at most this many rows each (`LIMIT`):
    /// each is sent again until it deletes fewer, so none runs long.
    pub(crate) prune_batch: Option<u64>,
}

/// One statement of an acquisition, and how it tells that it took the lock.
pub enum Acquire {
    /// Answers with a row, the token in its first column, only when it took the lock.
    Returning(Statement<LeaseParam>),
    /// Changes one row only when it took the lock; the token comes from `Token`.
    Counting(Statement<LeaseParam>, Token),
}

/// Where the token of a `Counting` acquisition comes from.
#[derive(Clone, Copy)]
pub enum Token {
    /// `LAST_INSERT_ID(expr)` set by the statement.
    LastInsertId,
    /// A query of the database's clock, sent after the acquisition: later
    /// than it, earlier than any next one.
    Clock,
}

/// What a statement changed.
pub struct Counts {
    pub(crate) rows_affected: u64,
    /// The value of `LAST_INSERT_ID()` after it, where the database has one.
    pub(crate) last_insert_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_date_modifiers_in_whole_milliseconds() {
        let modifier = |duration| match DurationEncoding::DateModifier.encode(duration) {
            Value::Text(text) => text,
            other => panic!("not a modifier: {other:?}"), // allow-panic: unit test
        };
        assert_eq!(modifier(Duration::from_millis(1500)), "+1.500 seconds");
        assert_eq!(modifier(Duration::from_micros(1)), "+0.001 seconds");
        assert_eq!(modifier(Duration::ZERO), "+0.000 seconds");
        assert_eq!(modifier(Duration::from_secs(3600)), "+3600.000 seconds");
    }
}
