//! The lock table's name (validated, so it can be put into SQL text) and the
//! limits of its columns.

// Without a database feature, only the constants are used.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]

use std::fmt;
use std::time::Duration;

use shedlock_core::LockError;

/// ShedLock's table name, the default.
pub const DEFAULT_TABLE_NAME: &str = "shedlock";

/// The longest lock name the table holds: ShedLock's `name VARCHAR(64)`, in characters.
pub const MAX_SQL_NAME_LEN: usize = 64;

/// The longest `locked_by` value the table holds: `locked_by VARCHAR(255)`, in characters.
pub(crate) const MAX_LOCKED_BY_LEN: usize = 255;

/// The longest schema name accepted: PostgreSQL's and MySQL's identifier
/// limits are 63 and 64 bytes.
const MAX_IDENTIFIER_LEN: usize = 63;

/// What the companion table's name adds to the lock table's: `shedlock`'s
/// settings live in `shedlock_settings`.
pub(crate) const SETTINGS_SUFFIX: &str = "_settings";

/// What the run history table's name adds to the lock table's (shorter than
/// [`SETTINGS_SUFFIX`], so it fits whenever that does).
pub(crate) const RUNS_SUFFIX: &str = "_runs";

/// What the shared holders' table's name adds to the lock table's (as
/// the next one, shorter than [`SETTINGS_SUFFIX`]).
const HOLDERS_SUFFIX: &str = "_holders";

/// What the exclusive waiters' table's name adds to the lock table's.
const WAITERS_SUFFIX: &str = "_waiters";

/// What the table of claimed ticks adds to the lock table's name.
const TICKS_SUFFIX: &str = "_ticks";

/// The longest lock table name accepted: its companion's name must fit too.
const MAX_TABLE_LEN: usize = MAX_IDENTIFIER_LEN - SETTINGS_SUFFIX.len();

/// A table name that is safe to write into a statement: `table` or
/// `schema.table`, each part `[A-Za-z_][A-Za-z0-9_]*`, the schema at most 63
/// characters and the table at most 54 (so that its companion,
/// `<table>_settings`, is at most 63 too).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// ShedLock's `shedlock`, the default.
    pub(crate) fn shedlock() -> TableName {
        TableName {
            schema: None,
            table: DEFAULT_TABLE_NAME.to_owned(),
        }
    }

    /// Checks `name`; nothing else ever reaches SQL text.
    pub(crate) fn parse(name: &str) -> Result<TableName, LockError> {
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if let Some(schema) = schema {
            check_identifier(name, schema, MAX_IDENTIFIER_LEN)?;
        }
        check_identifier(name, table, MAX_TABLE_LEN)?;
        Ok(TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The schema part, if one was given.
    #[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The companion table of this lock table: `<table>_settings` in the same
    /// schema, where operators' capacities and pauses are kept.
    pub(crate) fn settings(&self) -> TableName {
        self.with_suffix(SETTINGS_SUFFIX)
    }

    /// The companion table of this lock table where the last runs of each
    /// lock are kept: `<table>_runs` in the same schema.
    pub(crate) fn runs(&self) -> TableName {
        self.with_suffix(RUNS_SUFFIX)
    }

    /// The companion table of this lock table where shared holders (and
    /// exclusive holders' renewals) are kept: `<table>_holders`.
    pub(crate) fn holders(&self) -> TableName {
        self.with_suffix(HOLDERS_SUFFIX)
    }

    /// The companion table of this lock table where exclusive waiters hold
    /// their place: `<table>_waiters`.
    pub(crate) fn waiters(&self) -> TableName {
        self.with_suffix(WAITERS_SUFFIX)
    }

    /// The companion table of this lock table where the last tick each
    /// lock claimed is kept (`for_tick`): `<table>_ticks`.
    pub(crate) fn ticks(&self) -> TableName {
        self.with_suffix(TICKS_SUFFIX)
    }

    fn with_suffix(&self, suffix: &str) -> TableName {
        TableName {
            schema: self.schema.clone(),
            table: format!("{}{suffix}", self.table),
        }
    }

    /// The table part, without the schema.
    #[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn table(&self) -> &str {
        &self.table
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

fn check_identifier(whole: &str, part: &str, max_len: usize) -> Result<(), LockError> {
    let mut chars = part.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let rest_well = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_well || part.len() > max_len {
        return Err(LockError::InvalidConfiguration(format!(
            "the lock table name {whole:?} is not a plain SQL identifier of the right length; \
             use `table` or `schema.table`, each made of ASCII letters, digits and `_`, not \
             starting with a digit, the schema at most {MAX_IDENTIFIER_LEN} characters and the \
             table at most {MAX_TABLE_LEN} (its companion `<table>{SETTINGS_SUFFIX}` must fit \
             the database's {MAX_IDENTIFIER_LEN})"
        )));
    }
    Ok(())
}

/// Refuses, before any statement, a name no lock can have (empty, blank,
/// longer than shedlock allows anywhere) or that the `name VARCHAR(64)`
/// column cannot hold: what operators' calls check (acquisitions check the
/// first part when their configuration is made).
pub(crate) fn check_admin_name(name: &str) -> Result<(), LockError> {
    // The library's own rules, as `LockConfiguration::new` applies them.
    shedlock_core::LockConfiguration::new(name, Duration::from_secs(1), Duration::ZERO)?;
    check_lock_name(name)
}

/// Refuses, before any statement, a lock name the `name VARCHAR(64)` column cannot hold.
pub(crate) fn check_lock_name(name: &str) -> Result<(), LockError> {
    let chars = name.chars().count();
    if chars > MAX_SQL_NAME_LEN {
        return Err(LockError::InvalidConfiguration(format!(
            "the lock name '{name}' is {chars} characters long, more than the \
             {MAX_SQL_NAME_LEN} that the SQL lock table's `name VARCHAR({MAX_SQL_NAME_LEN})` \
             column holds; use a shorter name (an identifier of the resource, not its contents)"
        )));
    }
    Ok(())
}

/// What separates who holds a lock from the acquisition's unique id in `locked_by`.
const ID_SEPARATOR: &str = ";id=";

/// `locked_by` of one acquisition: `{locked_by};id={unique id}`, unique, so a
/// holder whose lease ended never matches the next one. The `locked_by` part
/// is shortened so that the whole fits the column.
pub(crate) fn acquisition_locked_by(locked_by: &str) -> String {
    let id = shedlock_core::identity::unique_acquisition_id();
    let suffix = format!("{ID_SEPARATOR}{id}");
    let room = MAX_LOCKED_BY_LEN.saturating_sub(suffix.chars().count());
    let mut value: String = locked_by.chars().take(room).collect();
    value.push_str(&suffix);
    value
}

/// Who holds a lock, from a row's `locked_by`: without the acquisition's
/// id (a row ShedLock for Java wrote has none).
pub(crate) fn holder_of(locked_by: &str) -> &str {
    locked_by
        .rsplit_once(ID_SEPARATOR)
        .map_or(locked_by, |(holder, _id)| holder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_schema_qualified_names() {
        for name in [
            "shedlock",
            "_locks",
            "Locks_2",
            "public.shedlock",
            "app.job_locks",
        ] {
            let parsed = TableName::parse(name).map(|table| table.to_string()).ok();
            assert_eq!(parsed.as_deref(), Some(name));
        }
        let parsed = TableName::parse("app.locks").ok();
        assert_eq!(parsed.as_ref().and_then(TableName::schema), Some("app"));
        assert_eq!(parsed.as_ref().map(TableName::table), Some("locks"));
        assert_eq!(
            parsed.map(|table| table.settings().to_string()).as_deref(),
            Some("app.locks_settings")
        );
        let longest = "t".repeat(MAX_TABLE_LEN);
        let settings = TableName::parse(&longest).map(|table| table.settings().to_string());
        assert_eq!(
            settings.map(|name| name.len()).ok(),
            Some(MAX_IDENTIFIER_LEN)
        );
        assert_eq!(TableName::shedlock().to_string(), DEFAULT_TABLE_NAME);
    }

    #[test]
    fn refuses_anything_that_could_change_a_statement() {
        let long = "x".repeat(64);
        let too_long_for_the_companion = "x".repeat(MAX_TABLE_LEN + 1);
        for name in [
            too_long_for_the_companion.as_str(),
            "",
            "1locks",
            "locks; DROP TABLE users",
            "locks--",
            "\"locks\"",
            "a.b.c",
            ".locks",
            "locks.",
            "lock s",
            "löcks",
            long.as_str(),
        ] {
            let err = TableName::parse(name).err();
            assert!(
                matches!(err, Some(LockError::InvalidConfiguration(_))),
                "{name:?} was accepted"
            );
        }
    }

    #[test]
    fn lock_names_longer_than_the_column_are_refused() {
        assert!(check_lock_name(&"é".repeat(64)).is_ok());
        let err = check_lock_name(&"x".repeat(65)).err();
        assert!(
            matches!(&err, Some(LockError::InvalidConfiguration(message)) if message.contains("VARCHAR(64)")),
            "{err:?}"
        );
        for bad in ["", "   ", &"x".repeat(65)] {
            assert!(
                matches!(
                    check_admin_name(bad),
                    Err(LockError::InvalidConfiguration(_))
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(check_admin_name("nightly-report").is_ok());
    }

    #[test]
    fn acquisition_values_are_unique_and_fit_the_column() {
        let a = acquisition_locked_by("host:1");
        let b = acquisition_locked_by("host:1");
        assert_ne!(a, b);
        assert!(a.starts_with("host:1;id="), "{a}");
        let long = acquisition_locked_by(&"h".repeat(400));
        assert_eq!(long.chars().count(), MAX_LOCKED_BY_LEN);
        assert!(long.contains(";id="));
        assert_eq!(holder_of(&a), "host:1");
        assert_eq!(holder_of("java-host"), "java-host");
    }
}
