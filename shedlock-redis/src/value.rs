//! What shedlock stores under its keys: the value of a lock key (unique per
//! acquisition, readable by operators), and, read back for operators, an
//! exclusive holder's renewal stamp and the entries of a run history.
//!
//! A lock value is `ADDED:<locked_at>@<locked_by>;id=<acquisition id>`: the
//! start is ShedLock for Java's format (`ADDED:<time>@<host>`), the id makes
//! it unique, so the release and extension scripts can tell this acquisition
//! from the next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shedlock_core::identity::{UNIQUE_ACQUISITION_ID_MAX_LEN, write_unique_acquisition_id};
use shedlock_core::{FinishedRun, LockHolder, LockMode, RunRecord};

const ID_SEPARATOR: &str = ";id=";

/// What a waiting process appends to an exclusive holder's value, so that
/// the holder's release publishes a notification (see `acquire.lua`).
pub(crate) const WAITED_MARK: &str = ";waited";

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
    push_rfc3339_millis(&mut value, SystemTime::now());
    for part in ["@", locked_by, ID_SEPARATOR] {
        value.push_str(part);
    }
    write_unique_acquisition_id(&mut value);
    value
}

/// Appends `at` as `2024-05-01T10:00:00.123Z` (what humantime's
/// `format_rfc3339_millis` writes), by arithmetic rather than the formatting
/// machinery: every acquisition writes one. Times before 1970 (a clock far
/// off) are written as 1970-01-01T00:00:00.000Z.
fn push_rfc3339_millis(out: &mut String, at: SystemTime) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let millis = u64::from(since_epoch.subsec_millis());
    let mut text = *b"0000-00-00T00:00:00.000Z";
    // Four-digit years (until 9999, as RFC 3339 allows).
    for (at, width, n) in [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, day_secs / 3600),
        (14, 2, day_secs / 60 % 60),
        (17, 2, day_secs % 60),
        (20, 3, millis),
    ] {
        let mut rest = n;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    // Only ASCII digits were written into an ASCII template.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// What an operator can read from a lock value (ours or ShedLock for Java's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockValue {
    /// When the holder took the lock, by the holder's clock (RFC 3339).
    pub(crate) locked_at: String,
    /// Who holds the lock (host name and process id by default).
    pub(crate) locked_by: String,
}

impl LockValue {
    /// Reads a lock value; `None` for values in another format.
    pub(crate) fn parse(value: &str) -> Option<LockValue> {
        // A waiter's mark (see acquire.lua) is no part of who holds the lock.
        let value = value.strip_suffix(WAITED_MARK).unwrap_or(value);
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

/// Who, and since when, from a lock value; the raw value when it is in
/// neither shedlock's nor ShedLock for Java's format.
pub(crate) fn holder_from_value(value: &str) -> LockHolder {
    let parsed = LockValue::parse(value);
    LockHolder {
        locked_by: parsed
            .as_ref()
            .map_or_else(|| value.to_owned(), |parsed| parsed.locked_by.clone()),
        locked_at: parsed
            .and_then(|parsed| humantime::parse_rfc3339_weak(&parsed.locked_at).ok())
            .map(|at: SystemTime| at),
        lease_left: None,
        mode: LockMode::Exclusive,
        fencing_token: None,
        renewed_ago: None,
        renewals: None,
    }
}

/// An exclusive holder's last renewal, as `extend.lua` stamps it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RenewalStamp {
    pub(crate) token: Option<u64>,
    pub(crate) at_ms: i64,
    pub(crate) renewals: u64,
}

impl RenewalStamp {
    /// `"<token> <server ms> <renewals> <value>"`, if it is the renewal of
    /// the lock key's `current` value (perhaps marked by a waiter since).
    pub(crate) fn parse(stamp: &str, current: &str) -> Option<RenewalStamp> {
        let mut fields = stamp.splitn(4, ' ');
        let token = fields.next()?.parse::<u64>().ok()?;
        let at_ms = fields.next()?.parse::<i64>().ok()?;
        let renewals = fields.next()?.parse::<u64>().ok()?;
        let value = fields.next()?;
        let rest = current.strip_prefix(value)?;
        if !(rest.is_empty() || rest == WAITED_MARK) {
            return None;
        }
        Some(RenewalStamp {
            token: Some(token).filter(|token| *token > 0),
            at_ms,
            renewals,
        })
    }
}

/// A run as `history.lua` writes it: `"<finished ms> <duration ms> <outcome>
/// <token> <locked_by>"`; `None` for an entry that is not one.
pub(crate) fn parse_run(entry: &str) -> Option<RunRecord> {
    let mut fields = entry.splitn(5, ' ');
    let finished_ms = fields.next()?.parse::<u64>().ok()?;
    let duration = Duration::from_millis(fields.next()?.parse::<u64>().ok()?);
    let outcome = fields.next()?.parse().ok()?;
    let token = fields.next()?.parse::<u64>().ok()?;
    let locked_by = fields.next().unwrap_or_default();
    let run = FinishedRun {
        duration,
        outcome,
        fencing_token: Some(token).filter(|token| *token > 0),
    };
    let finished_at = SystemTime::UNIX_EPOCH + Duration::from_millis(finished_ms);
    Some(RunRecord::new(&run, locked_by, finished_at))
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
    fn locked_at_is_written_as_humantime_writes_it() {
        // Every day from 1970 to 2400 (leap years, centuries), at varied times of day.
        for day in (0..157_000u64).step_by(7) {
            let secs = day * 86_400 + (day * 7_919) % 86_400;
            let at = UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + day % 1000);
            let mut ours = String::new();
            push_rfc3339_millis(&mut ours, at);
            assert_eq!(ours, humantime::format_rfc3339_millis(at).to_string());
        }
        let mut now = String::new();
        push_rfc3339_millis(&mut now, SystemTime::now());
        assert_eq!(now.len(), RFC3339_MILLIS_LEN);
    }

    #[test]
    fn reads_values_written_by_shedlock_for_java() {
        assert_eq!(
            LockValue::parse("ADDED:2024-05-01T10:00:00.123Z@app-7f9c;waited")
                .map(|value| value.locked_by),
            Some("app-7f9c".to_owned()),
            "a waiter's mark is not part of locked_by"
        );
        assert_eq!(
            LockValue::parse("ADDED:2024-05-01T10:00:00.123Z@app-7f9c"),
            Some(LockValue {
                locked_at: "2024-05-01T10:00:00.123Z".to_owned(),
                locked_by: "app-7f9c".to_owned(),
            })
        );
        assert_eq!(LockValue::parse("something else"), None);
    }

    #[test]
    fn a_renewal_stamp_counts_only_for_the_value_it_renewed() {
        let value = "ADDED:2026-01-01T00:00:00.000Z@host 1:7;id=a";
        let stamp = format!("17 1000 3 {value}");
        let parsed = RenewalStamp::parse(&stamp, value);
        assert_eq!(
            parsed,
            Some(RenewalStamp {
                token: Some(17),
                at_ms: 1000,
                renewals: 3
            })
        );
        let marked = format!("{value}{WAITED_MARK}");
        assert_eq!(RenewalStamp::parse(&stamp, &marked), parsed);
        // An earlier holder's stamp, or a longer value, is not this holder's.
        assert_eq!(RenewalStamp::parse(&stamp, "ADDED:x@other;id=b"), None);
        assert_eq!(RenewalStamp::parse(&stamp, &format!("{value}1")), None);
        // No token issued yet.
        let untokened = format!("0 1000 1 {value}");
        assert_eq!(
            RenewalStamp::parse(&untokened, value).map(|stamp| stamp.token),
            Some(None)
        );
        assert_eq!(RenewalStamp::parse("garbage", value), None);
    }
}
