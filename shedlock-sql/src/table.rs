//! The lock table's name (validated, so it can be put into SQL text) and the
//! limits of its columns.

// Without a database feature, only the constants are used.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]

use std::fmt;

use shedlock_core::LockError;

/// ShedLock's table name, the default.
pub const DEFAULT_TABLE_NAME: &str = "shedlock";

/// The longest lock name the table holds: ShedLock's `name VARCHAR(64)`, in characters.
pub const MAX_SQL_NAME_LEN: usize = 64;

/// The longest `locked_by` value the table holds: `locked_by VARCHAR(255)`, in characters.
pub(crate) const MAX_LOCKED_BY_LEN: usize = 255;

/// The longest table name (or schema name) accepted: PostgreSQL's and MySQL's
/// identifier limits are 63 and 64 bytes.
const MAX_IDENTIFIER_LEN: usize = 63;

/// A table name that is safe to write into a statement: `table` or
/// `schema.table`, each part `[A-Za-z_][A-Za-z0-9_]*` and at most 63 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct TableName {
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
        for part in schema.iter().copied().chain([table]) {
            check_identifier(name, part)?;
        }
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

fn check_identifier(whole: &str, part: &str) -> Result<(), LockError> {
    let mut chars = part.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let rest_well = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_well || part.len() > MAX_IDENTIFIER_LEN {
        return Err(LockError::InvalidConfiguration(format!(
            "the lock table name {whole:?} is not a plain SQL identifier; use `table` or \
             `schema.table`, each made of ASCII letters, digits and `_`, not starting with a \
             digit, at most {MAX_IDENTIFIER_LEN} characters"
        )));
    }
    Ok(())
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

/// `locked_by` of one acquisition: `{locked_by};id={unique id}`, unique, so a
/// holder whose lease ended never matches the next one. The `locked_by` part
/// is shortened so that the whole fits the column.
pub(crate) fn acquisition_locked_by(locked_by: &str) -> String {
    let id = shedlock_core::identity::unique_acquisition_id();
    let suffix = format!(";id={id}");
    let room = MAX_LOCKED_BY_LEN.saturating_sub(suffix.chars().count());
    let mut value: String = locked_by.chars().take(room).collect();
    value.push_str(&suffix);
    value
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
        assert_eq!(TableName::shedlock().to_string(), DEFAULT_TABLE_NAME);
    }

    #[test]
    fn refuses_anything_that_could_change_a_statement() {
        let long = "x".repeat(64);
        for name in [
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
    }
}
