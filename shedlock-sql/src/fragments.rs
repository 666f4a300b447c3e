//! The fragments of the statement templates on the three databases, side
//! by side: their clocks, interval arithmetic, casts, upserts and column
//! types. `statements.rs` writes each statement once with these; a dialect
//! names its database (`Dialect::KIND`) and overrides only the statements
//! whose shape differs.

use crate::dialect::DurationEncoding;
use crate::schema::ColumnType;
use crate::table::TableName;

/// Which database a dialect speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlKind {
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
}

use SqlKind::{MySql, Postgres, Sqlite};

/// PostgreSQL's clock, read when evaluated: after the statement has waited
/// for the row's lock (`now()` is fixed at the statement's start, and a
/// lease taken after a wait would start, and end, in the past).
const PG_AFTER_WAIT: &str = "(clock_timestamp() AT TIME ZONE 'UTC')";

/// MySQL's clock in UTC, read when evaluated, after the statement's wait
/// for the row's lock (unlike `UTC_TIMESTAMP`, fixed at its start).
/// `SYSDATE` is in the session's time zone, whose offset is `NOW() -
/// UTC_TIMESTAMP()`. `SYSDATE(6)` for a lease's end, rounded up to the
/// column's milliseconds (`+ 999` microseconds); `SYSDATE(3)` (truncated)
/// for `locked_at` and to test whether a lease has ended.
macro_rules! mysql_after_wait {
    ($digits:literal) => {
        concat!(
            "(SYSDATE(",
            $digits,
            ") - INTERVAL TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) SECOND)"
        )
    };
}

/// SQLite's clock, in UTC, in the columns' format.
const SQLITE_NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

/// `strftime` format of every time in an SQLite table.
const SQLITE_FORMAT: &str = "'%Y-%m-%d %H:%M:%f'";

/// `time` as the input of an SQLite date function: `'now'` for its clock
/// (the same instant throughout a statement), the expression itself otherwise.
fn julian(time: &str) -> &str {
    if time == SQLITE_NOW { "'now'" } else { time }
}

impl SqlKind {
    /// The store's name in errors and scopes.
    pub(crate) const fn store(self) -> &'static str {
        match self {
            Postgres => "postgres",
            MySql => "mysql",
            Sqlite => "sqlite",
        }
    }

    /// The database's name in messages.
    pub(crate) const fn title(self) -> &'static str {
        match self {
            Postgres => "PostgreSQL",
            MySql => "MySQL/MariaDB",
            Sqlite => "SQLite",
        }
    }

    /// The provider's name in `Debug` output.
    pub(crate) const fn provider(self) -> &'static str {
        match self {
            Postgres => "PostgresLockProvider",
            MySql => "MySqlLockProvider",
            Sqlite => "SqliteLockProvider",
        }
    }

    /// The shape of a URL `connect` takes, for the message on a malformed one.
    pub(crate) const fn url_shape(self) -> &'static str {
        match self {
            Postgres => "postgres://[user[:password]@]host[:port]/database",
            MySql => "mysql://[user[:password]@]host[:port]/database",
            Sqlite => "sqlite://path/to/file.db",
        }
    }

    /// How durations are sent (PostgreSQL: milliseconds; MySQL:
    /// microseconds; SQLite: date modifiers), and `lease_left` answers.
    pub(crate) const fn durations(self) -> DurationEncoding {
        match self {
            Postgres => DurationEncoding::Millis,
            MySql => DurationEncoding::Micros,
            Sqlite => DurationEncoding::DateModifier,
        }
    }

    /// Whether placeholders are numbered (`$1`, `?1`: one value per
    /// parameter, its number reused) or not (`?`: one value per placeholder).
    pub(crate) const fn numbered_placeholders(self) -> bool {
        !matches!(self, MySql)
    }

    /// The `index`th placeholder of a statement (from 1).
    pub(crate) fn placeholder(self, index: usize) -> String {
        match self {
            Postgres => format!("${index}"),
            MySql => "?".to_owned(),
            Sqlite => format!("?{index}"),
        }
    }

    /// The clock, in UTC, in a statement of its own (PostgreSQL's `now()`:
    /// the start of the statement, which runs alone in its transaction;
    /// SQLite's `'now'`: one instant throughout a statement).
    pub(crate) const fn now(self) -> &'static str {
        match self {
            Postgres => "(now() AT TIME ZONE 'UTC')",
            MySql => "UTC_TIMESTAMP(3)",
            Sqlite => SQLITE_NOW,
        }
    }

    /// The clock in a statement of a lock-kinds transaction, read after the
    /// statement waited for the name's row lock (PostgreSQL's `now()` is the
    /// transaction's start, which may have fallen behind).
    pub(crate) const fn now_in_transaction(self) -> &'static str {
        match self {
            Postgres => "(statement_timestamp() AT TIME ZONE 'UTC')",
            MySql | Sqlite => self.now(),
        }
    }

    /// The clock, read after the statement has waited for the row's lock,
    /// as a lease's start (`locked_at`) and to test whether a lease is live.
    pub(crate) const fn after_wait(self) -> &'static str {
        match self {
            Postgres => PG_AFTER_WAIT,
            MySql => mysql_after_wait!(3),
            // One write at a time holds the file: no statement waits for a row.
            Sqlite => SQLITE_NOW,
        }
    }

    /// The clock in microseconds since 1970, read when evaluated (SQLite's
    /// in milliseconds).
    pub(crate) const fn clock_micros(self) -> &'static str {
        match self {
            Postgres => "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            MySql => {
                "CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) AS SIGNED)"
            }
            Sqlite => "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000",
        }
    }

    /// The end of a lease of `duration` (a parameter) from the clock read
    /// after the statement's wait for the row lock, rounded up to the
    /// column's milliseconds (PostgreSQL rounds to the nearest), so the
    /// stored lease is never shorter than the guard's.
    pub(crate) fn lease_end(self, duration: &str) -> String {
        match self {
            Postgres => format!(
                "date_trunc('milliseconds', {PG_AFTER_WAIT} + {duration}::bigint \
                 * INTERVAL '1 millisecond' + INTERVAL '999 microseconds')"
            ),
            MySql => format!(
                "{} + INTERVAL {duration} + 999 MICROSECOND",
                mysql_after_wait!(6)
            ),
            Sqlite => self.plus(SQLITE_NOW, duration),
        }
    }

    /// The time `duration` (a parameter) after `time`.
    pub(crate) fn plus(self, time: &str, duration: &str) -> String {
        match self {
            Postgres => format!("{time} + {duration}::bigint * INTERVAL '1 millisecond'"),
            MySql => format!("{time} + INTERVAL {duration} MICROSECOND"),
            Sqlite => format!("strftime({SQLITE_FORMAT}, {}, {duration})", julian(time)),
        }
    }

    /// The time `millis` (a parameter, milliseconds since 1970), in UTC.
    pub(crate) fn time_of_millis(self, millis: &str) -> String {
        match self {
            Postgres => format!("(to_timestamp({millis}::bigint / 1000.0) AT TIME ZONE 'UTC')"),
            // The session's time zone is UTC (`+00:00`, the driver's).
            MySql => format!("FROM_UNIXTIME({millis} / 1000)"),
            Sqlite => format!("strftime({SQLITE_FORMAT}, {millis} / 1000.0, 'unixepoch')"),
        }
    }

    /// The time `millis` (a parameter, whole milliseconds) before `time`.
    pub(crate) fn minus_millis(self, time: &str, millis: &str) -> String {
        match self {
            Postgres => format!("{time} - {millis}::bigint * INTERVAL '1 millisecond'"),
            MySql => format!("{time} - INTERVAL ({millis} * 1000) MICROSECOND"),
            Sqlite => format!(
                "strftime({SQLITE_FORMAT}, julianday({}) - {millis} / 86400000.0)",
                julian(time)
            ),
        }
    }

    /// Whole milliseconds from `from` to `to`.
    pub(crate) fn ms_between(self, from: &str, to: &str) -> String {
        match self {
            Postgres => format!("CAST(EXTRACT(EPOCH FROM ({to} - {from})) * 1000 AS BIGINT)"),
            MySql => format!("TIMESTAMPDIFF(MICROSECOND, {from}, {to}) DIV 1000"),
            Sqlite => format!(
                "CAST(ROUND((julianday({}) - julianday({})) * 86400000.0) AS INTEGER)",
                julian(to),
                julian(from)
            ),
        }
    }

    /// The time from `from` to `to`, in the units of [`durations`](Self::durations).
    pub(crate) fn lease_left(self, from: &str, to: &str) -> String {
        match self {
            MySql => format!("TIMESTAMPDIFF(MICROSECOND, {from}, {to})"),
            Postgres | Sqlite => self.ms_between(from, to),
        }
    }

    /// `column`, a time, in whole milliseconds since 1970.
    pub(crate) fn millis_since_1970(self, column: &str) -> String {
        match self {
            Postgres => format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000 AS BIGINT)"),
            MySql => format!("CAST(UNIX_TIMESTAMP({column}) * 1000 AS SIGNED)"),
            Sqlite => {
                format!("CAST(ROUND((julianday({column}) - 2440587.5) * 86400000.0) AS INTEGER)")
            }
        }
    }

    /// `expr` as a 64-bit integer (what the driver reads).
    pub(crate) fn int(self, expr: &str) -> String {
        match self {
            Postgres => format!("CAST({expr} AS BIGINT)"),
            MySql => format!("CAST({expr} AS SIGNED)"),
            Sqlite => expr.to_owned(),
        }
    }

    /// The parameter `param` (`:name`) with the SQL type `ty` where the
    /// database cannot infer it (PostgreSQL, in a CTE's SELECT).
    pub(crate) fn typed_param(self, param: &str, ty: &str) -> String {
        match self {
            Postgres => format!("{param}::{ty}"),
            MySql | Sqlite => param.to_owned(),
        }
    }

    /// The greater of two values.
    pub(crate) fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Postgres | MySql => format!("GREATEST({a}, {b})"),
            Sqlite => format!("MAX({a}, {b})"),
        }
    }

    /// The lesser of two values.
    pub(crate) fn least(self, a: &str, b: &str) -> String {
        match self {
            Postgres | MySql => format!("LEAST({a}, {b})"),
            Sqlite => format!("MIN({a}, {b})"),
        }
    }

    /// `time` cut to the column's milliseconds, where the database would
    /// round it: PostgreSQL's `now()` has microseconds, rounded up half the
    /// time, and an immediate release would keep the lock for a fraction of
    /// a millisecond.
    pub(crate) fn trunc_ms(self, time: &str) -> String {
        match self {
            Postgres => format!("date_trunc('milliseconds', {time})"),
            MySql | Sqlite => time.to_owned(),
        }
    }

    /// `INSERT INTO table`, aliased `alias` where the upsert's update names
    /// the stored row so (MySQL: no alias, the update's unqualified columns
    /// are the stored row's).
    pub(crate) fn upsert_into(self, table: &TableName, alias: &str) -> String {
        match self {
            Postgres | Sqlite => format!("INSERT INTO {table} AS {alias}"),
            MySql => format!("INSERT INTO {table}"),
        }
    }

    /// What turns an insert into an upsert on the key `columns`.
    pub(crate) fn on_conflict(self, columns: &str) -> String {
        match self {
            Postgres | Sqlite => format!("ON CONFLICT ({columns}) DO UPDATE SET"),
            MySql => "ON DUPLICATE KEY UPDATE".to_owned(),
        }
    }

    /// In an upsert's update: the value the insert brought for `column`.
    pub(crate) fn new_value(self, column: &str) -> String {
        match self {
            Postgres | Sqlite => format!("EXCLUDED.{column}"),
            MySql => format!("VALUES({column})"),
        }
    }

    /// In an upsert's update: the stored row's `column` (aliased `alias`).
    pub(crate) fn old_value(self, alias: &str, column: &str) -> String {
        match self {
            Postgres | Sqlite => format!("{alias}.{column}"),
            MySql => column.to_owned(),
        }
    }

    /// An insert that does nothing when the row is there: its head and tail.
    pub(crate) fn insert_ignore(self, table: &TableName) -> (String, &'static str) {
        match self {
            Postgres | Sqlite => (format!("INSERT INTO {table}"), " ON CONFLICT DO NOTHING"),
            MySql => (format!("INSERT IGNORE INTO {table}"), ""),
        }
    }

    /// The SQL type of a column of `ty`, with its constraints. MySQL's times
    /// default to the clock: it refuses a `TIMESTAMP NOT NULL` without a
    /// default in some SQL modes. SQLite's `id INTEGER PRIMARY KEY` is the
    /// rowid: it grows, so the newest run has the greatest.
    pub(crate) const fn column_type(self, ty: ColumnType) -> &'static str {
        match (ty, self) {
            (ColumnType::Name, _) => "VARCHAR(64) NOT NULL",
            (ColumnType::Holder, _) => "VARCHAR(255) NOT NULL",
            (ColumnType::Time, MySql) => "TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)",
            (ColumnType::Time, _) => "TIMESTAMP(3) NOT NULL",
            (ColumnType::Count, Sqlite) => "INTEGER NOT NULL",
            (ColumnType::Count, _) => "INT NOT NULL",
            (ColumnType::OptionalCount, Sqlite) => "INTEGER",
            (ColumnType::OptionalCount, _) => "INT",
            (ColumnType::Counter, _) => "BIGINT NOT NULL DEFAULT 0",
            (ColumnType::Big, _) => "BIGINT NOT NULL",
            (ColumnType::OptionalBig, _) => "BIGINT",
            (ColumnType::Outcome, _) => "VARCHAR(16) NOT NULL",
            (ColumnType::Id, Postgres) => "BIGSERIAL PRIMARY KEY",
            (ColumnType::Id, MySql) => "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
            (ColumnType::Id, Sqlite) => "INTEGER PRIMARY KEY",
        }
    }
}
