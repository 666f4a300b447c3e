//! The value of a lock key: unique per acquisition, readable by operators.
//!
//! `ADDED:<locked_at>@<locked_by>;id=<acquisition id>`: the start is ShedLock
//! for Java's format (`ADDED:<time>@<host>`), the id makes it unique, so the
//! release and extension scripts can tell this acquisition from the next.

use std::fmt::Write as _;
use std::time::SystemTime;

use shedlock_core::identity::{UNIQUE_ACQUISITION_ID_MAX_LEN, write_unique_acquisition_id};

const ID_SEPARATOR: &str = ";id=";

/// `2024-05-01T10:00:00.123Z`: the length of `locked_at` (a capacity hint).
const RFC3339_MILLIS_LEN: usize = 24;

/// Builds the value of a new acquisition. Runs on every acquisition, so the
/// value is written into one buffer of its final size (`format!` would grow
/// its buffer several times).
pub(crate) fn new_lock_value(locked_by: &str) -> String {
    let mut value = String::with_capacity(
        "ADDED:@".len()
            + RFC3339_MILLIS_LEN
            + locked_by.len()
            + ID_SEPARATOR.len()
            + UNIQUE_ACQUISITION_ID_MAX_LEN,
    );
    value.push_str("ADDED:");
    // Formatting into a String never fails.
    let _ = write!(
        value,
        "{}",
        humantime::format_rfc3339_millis(SystemTime::now())
    );
    for part in ["@", locked_by, ID_SEPARATOR] {
        value.push_str(part);
    }
    write_unique_acquisition_id(&mut value);
    value
}

/// What an operator can read from a lock value (ours or ShedLock for Java's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockValue {
    /// When the holder took the lock, by the holder's clock (RFC 3339).
    pub locked_at: String,
    /// Who holds the lock (host name and process id by default).
    pub locked_by: String,
}

impl LockValue {
    /// Reads a lock value; `None` for values in another format.
    pub fn parse(value: &str) -> Option<LockValue> {
        let rest = value.strip_prefix("ADDED:")?;
        let rest = rest
            .rsplit_once(ID_SEPARATOR)
            .map_or(rest, |(rest, _id)| rest);
        let (locked_at, locked_by) = rest.split_once('@')?;
        Some(LockValue {
            locked_at: locked_at.to_owned(),
            locked_by: locked_by.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_readable() {
        let (a, b) = (new_lock_value("host:1"), new_lock_value("host:1"));
        assert_ne!(a, b);
        let parsed = LockValue::parse(&a);
        assert_eq!(
            parsed.as_ref().map(|value| value.locked_by.as_str()),
            Some("host:1")
        );
        assert!(
            parsed.is_some_and(|value| humantime::parse_rfc3339(&value.locked_at).is_ok()),
            "unreadable value {a:?}"
        );
    }

    #[test]
    fn reads_values_written_by_shedlock_for_java() {
        assert_eq!(
            LockValue::parse("ADDED:2024-05-01T10:00:00.123Z@app-7f9c"),
            Some(LockValue {
                locked_at: "2024-05-01T10:00:00.123Z".to_owned(),
                locked_by: "app-7f9c".to_owned(),
            })
        );
        assert_eq!(LockValue::parse("something else"), None);
    }
}
