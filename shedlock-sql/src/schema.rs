//! The tables, described once: the description gives each database's DDL
//! (its column types from the dialect) and the columns the schema check
//! requires, so the two cannot drift apart.

use crate::dialect::Dialect;
use crate::table::TableName;

/// What a column holds; a dialect gives its SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// A lock name (or a waiter's id): `VARCHAR(64) NOT NULL`.
    Name,
    /// Who holds a lease: `VARCHAR(255) NOT NULL`.
    Holder,
    /// A time in UTC, to the millisecond.
    Time,
    /// A count that is never negative (capacity, permits).
    Count,
    /// A count or nothing (the capacity a resume restores).
    OptionalCount,
    /// ShedLock's optional fencing counter: `BIGINT NOT NULL DEFAULT 0`.
    Counter,
    /// A 64-bit integer.
    Big,
    /// A 64-bit integer or nothing (a token that was not issued).
    OptionalBig,
    /// A run's outcome: `VARCHAR(16) NOT NULL`.
    Outcome,
    /// An increasing row id, the primary key.
    Id,
}

/// One column of a table.
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) ty: ColumnType,
    /// Whether the schema check requires it (ShedLock for Java's lock table
    /// has no fencing column).
    pub(crate) required: bool,
}

const fn column(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        required: true,
    }
}

/// One table: what it is for (in messages), its columns and keys.
pub(crate) struct Shape {
    pub(crate) what: &'static str,
    pub(crate) columns: &'static [Column],
    pub(crate) primary_key: Option<&'static str>,
    pub(crate) unique: Option<&'static str>,
}

/// ShedLock's table, with the optional `fencing_token` column.
pub(crate) static LOCK_TABLE: Shape = Shape {
    what: "lock table",
    columns: &[
        column("name", ColumnType::Name),
        column("lock_until", ColumnType::Time),
        column("locked_at", ColumnType::Time),
        column("locked_by", ColumnType::Holder),
        Column {
            name: "fencing_token",
            ty: ColumnType::Counter,
            required: false,
        },
    ],
    primary_key: Some("name"),
    unique: None,
};

/// The capacities operators stored (0: paused), and what a resume restores.
pub(crate) static SETTINGS_TABLE: Shape = Shape {
    what: "settings table",
    columns: &[
        column("name", ColumnType::Name),
        column("capacity", ColumnType::Count),
        column("resume_to", ColumnType::OptionalCount),
    ],
    primary_key: Some("name"),
    unique: None,
};

/// The last runs of each lock (an increasing `id`, unique with the name).
pub(crate) static RUNS_TABLE: Shape = Shape {
    what: "run history table",
    columns: &[
        column("id", ColumnType::Id),
        column("name", ColumnType::Name),
        column("started_at", ColumnType::Time),
        column("finished_at", ColumnType::Time),
        column("duration_ms", ColumnType::Big),
        column("outcome", ColumnType::Outcome),
        column("locked_by", ColumnType::Holder),
        column("fencing_token", ColumnType::OptionalBig),
    ],
    primary_key: None,
    unique: Some("name, id"),
};

/// One row per shared holder (its permits, lease, token and renewals), and
/// one with 0 permits per exclusive holder that renewed its lease.
pub(crate) static HOLDERS_TABLE: Shape = Shape {
    what: "shared holders table",
    columns: &[
        column("name", ColumnType::Name),
        column("locked_by", ColumnType::Holder),
        column("permits", ColumnType::Count),
        column("locked_at", ColumnType::Time),
        column("lock_until", ColumnType::Time),
        column("fencing_token", ColumnType::OptionalBig),
        column("renewals", ColumnType::Counter),
        column("renewed_at", ColumnType::Time),
    ],
    primary_key: Some("name, locked_by"),
    unique: None,
};

/// The exclusive waiters queued before new shared holders, each until its
/// place lapses.
pub(crate) static WAITERS_TABLE: Shape = Shape {
    what: "exclusive waiters table",
    columns: &[
        column("name", ColumnType::Name),
        column("waiter", ColumnType::Name),
        column("queued_until", ColumnType::Time),
    ],
    primary_key: Some("name, waiter"),
    unique: None,
};

/// The last tick each lock claimed (`for_tick`), in milliseconds since
/// 1970, the one before it, and who claimed it when: kept after the lease,
/// so each tick runs once.
pub(crate) static TICKS_TABLE: Shape = Shape {
    what: "ticks table",
    columns: &[
        column("name", ColumnType::Name),
        column("last_tick", ColumnType::Big),
        column("previous_tick", ColumnType::OptionalBig),
        column("claimed_at", ColumnType::Time),
        column("claimed_by", ColumnType::Holder),
    ],
    primary_key: Some("name"),
    unique: None,
};

impl Shape {
    /// `CREATE TABLE IF NOT EXISTS` of `table` on `D`'s database.
    pub(crate) fn ddl<D: Dialect>(&self, table: &TableName) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                let check = if column.ty == ColumnType::Count {
                    format!(" CHECK ({} >= 0)", column.name)
                } else {
                    String::new()
                };
                format!("{} {}{check}", column.name, D::KIND.column_type(column.ty))
            })
            .collect();
        parts.extend(self.primary_key.map(|key| format!("PRIMARY KEY ({key})")));
        parts.extend(self.unique.map(|key| format!("UNIQUE ({key})")));
        format!("CREATE TABLE IF NOT EXISTS {table} ({})", parts.join(", "))
    }

    /// The columns the schema check requires.
    pub(crate) fn required(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter(|column| column.required)
            .map(|column| column.name)
            .collect()
    }
}

/// The companion tables of `table`, each with its shape.
pub(crate) fn companions(table: &TableName) -> [(TableName, &'static Shape); 5] {
    [
        (table.settings(), &SETTINGS_TABLE),
        (table.runs(), &RUNS_TABLE),
        (table.holders(), &HOLDERS_TABLE),
        (table.waiters(), &WAITERS_TABLE),
        (table.ticks(), &TICKS_TABLE),
    ]
}
