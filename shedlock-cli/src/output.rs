//! What the command prints: aligned text tables for people, JSON for scripts.

use std::time::Duration;

use std::fmt::Write as _;

use serde_json::{Value, json};
use shedlock_core::{LockHolder, LockMode, LockState};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

pub(crate) fn print_list(format: Format, locks: &[LockState]) {
    match format {
        Format::Json => {
            let items: Vec<Value> = locks.iter().map(|lock| state_json(lock, None)).collect();
            println!("{}", Value::Array(items));
        }
        Format::Text => print!("{}", list_table(locks)),
    }
}

pub(crate) fn print_state(format: Format, state: &LockState, key: &str, action: Option<&str>) {
    match format {
        Format::Json => println!("{}", state_json(state, action)),
        Format::Text => {
            if let Some(action) = action {
                println!("{}: {action}", state.name);
            }
            print!("{}", state_text(state, key));
        }
    }
}

pub(crate) fn print_unlocked(format: Format, name: &str, released: usize) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"name": name, "action": "unlocked", "released": released})
        ),
        Format::Text if released == 0 => println!("{name}: nobody held it"),
        Format::Text => println!(
            "{name}: {released} lease{} ended",
            if released == 1 { "" } else { "s" }
        ),
    }
}

/// The `list` table: one row per lock, columns aligned.
fn list_table(locks: &[LockState]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "HOLDERS".to_owned(),
        "LOCKED BY".to_owned(),
        "LOCKED AT".to_owned(),
        "TIME LEFT".to_owned(),
        "CAPACITY".to_owned(),
        "PAUSED".to_owned(),
    ]];
    for lock in locks {
        let latest = lock
            .holders
            .iter()
            .max_by_key(|holder| holder.lease_left.unwrap_or(Duration::MAX));
        let mut locked_by: Vec<&str> = lock.holders.iter().map(|h| h.locked_by.as_str()).collect();
        locked_by.sort_unstable();
        locked_by.dedup();
        rows.push([
            clean(&lock.name),
            holders_summary(lock),
            clean(&locked_by.join(", ")).if_empty("-"),
            latest.and_then(|holder| holder.locked_at).map_or_else(
                || "-".to_owned(),
                |at| humantime::format_rfc3339_seconds(at).to_string(),
            ),
            latest.map_or_else(|| "-".to_owned(), |holder| time_left(holder.lease_left)),
            lock.capacity
                .map_or_else(|| "default".to_owned(), |capacity| capacity.to_string()),
            if lock.paused { "yes" } else { "no" }.to_owned(),
        ]);
    }
    if locks.is_empty() {
        return "no locks are held or configured\n".to_owned();
    }
    let widths: Vec<usize> = (0..7)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(table, "{}", line.join("  ").trim_end());
    }
    table
}

/// `show`: the lock and each holder.
fn state_text(state: &LockState, key: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "lock:      {}", clean(&state.name));
    let _ = writeln!(text, "key:       {}", clean(key));
    let capacity = state.capacity.map_or_else(
        || "default (none stored: each job's own; 1 exclusive, unlimited shared)".to_owned(),
        |capacity| capacity.to_string(),
    );
    let _ = writeln!(text, "capacity:  {capacity}");
    let _ = writeln!(
        text,
        "paused:    {}",
        if state.paused { "yes" } else { "no" }
    );
    let _ = writeln!(text, "waiting exclusive jobs: {}", state.exclusive_waiters);
    if state.holders.is_empty() {
        let _ = writeln!(text, "holders:   none (free)");
        return text;
    }
    let _ = writeln!(
        text,
        "holders:   {} ({} permit{} taken)",
        state.holders.len(),
        state.permits_held(),
        if state.permits_held() == 1 { "" } else { "s" }
    );
    for holder in &state.holders {
        let _ = writeln!(
            text,
            "  - {}: {}, locked at {}, {} left{}",
            mode_text(holder.mode),
            clean(&holder.locked_by),
            holder.locked_at.map_or_else(
                || "?".to_owned(),
                |at| humantime::format_rfc3339_millis(at).to_string()
            ),
            time_left(holder.lease_left),
            holder
                .fencing_token
                .map_or_else(String::new, |token| format!(", fencing token {token}")),
        );
    }
    text
}

fn holders_summary(lock: &LockState) -> String {
    match lock.holders.as_slice() {
        [] => "-".to_owned(),
        [holder] if holder.mode == LockMode::Exclusive => "exclusive".to_owned(),
        holders => {
            let permits = lock.permits_held();
            let plural = if permits == 1 { "" } else { "s" };
            format!("{} ({permits} permit{plural})", holders.len())
        }
    }
}

fn mode_text(mode: LockMode) -> String {
    match mode {
        LockMode::Exclusive => "exclusive".to_owned(),
        LockMode::Shared { permits: 1 } => "shared".to_owned(),
        LockMode::Shared { permits } => format!("shared, {permits} permits"),
    }
}

fn time_left(left: Option<Duration>) -> String {
    match left {
        None => "no end".to_owned(),
        // Whole milliseconds, so the text stays short.
        Some(left) => {
            let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            humantime::format_duration(Duration::from_millis(millis)).to_string()
        }
    }
}

/// Control characters in names and values (any bytes a service put there)
/// are shown escaped, so they cannot move the terminal's cursor.
fn clean(text: &str) -> String {
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    clean
}

trait IfEmpty {
    fn if_empty(self, default: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, default: &str) -> String {
        if self.is_empty() {
            default.to_owned()
        } else {
            self
        }
    }
}

fn state_json(state: &LockState, action: Option<&str>) -> Value {
    let mut json = json!({
        "name": state.name,
        "capacity": state.capacity,
        "paused": state.paused,
        "exclusive_waiters": state.exclusive_waiters,
        "permits_held": state.permits_held(),
        "holders": state.holders.iter().map(holder_json).collect::<Vec<_>>(),
    });
    if let (Some(action), Some(fields)) = (action, json.as_object_mut()) {
        fields.insert("action".to_owned(), json!(action));
    }
    json
}

fn holder_json(holder: &LockHolder) -> Value {
    let (mode, permits) = match holder.mode {
        LockMode::Exclusive => ("exclusive", None),
        LockMode::Shared { permits } => ("shared", Some(permits)),
    };
    json!({
        "locked_by": holder.locked_by,
        "locked_at": holder
            .locked_at
            .map(|at| humantime::format_rfc3339_millis(at).to_string()),
        "lease_left_ms": holder.lease_left.map(|left| left.as_millis()),
        "mode": mode,
        "permits": permits,
        "fencing_token": holder.fencing_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let state = LockState {
            name: "a\"b\\c\nd\u{1}ü".to_owned(),
            holders: Vec::new(),
            capacity: None,
            paused: false,
            exclusive_waiters: 0,
        };
        let text = state_json(&state, None).to_string();
        assert!(text.contains(r#""name":"a\"b\\c\nd\u0001ü""#), "{text}");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(clean("job\u{1b}[2J"), "job\\u{1b}[2J");
        assert_eq!(clean("it's \"ü\""), "it's \"ü\"");
    }

    #[test]
    fn the_list_table_aligns_its_columns() {
        let lock = LockState {
            name: "report".to_owned(),
            holders: vec![LockHolder {
                locked_by: "host:1".to_owned(),
                locked_at: None,
                lease_left: Some(Duration::from_millis(1500)),
                mode: LockMode::Exclusive,
                fencing_token: None,
            }],
            capacity: Some(0),
            paused: true,
            exclusive_waiters: 0,
        };
        let table = list_table(&[lock]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert_eq!(
            lines[0].find("HOLDERS"),
            lines[1].find("exclusive"),
            "{table}"
        );
        assert!(
            lines[1].contains("1s 500ms") && lines[1].ends_with("yes"),
            "{table}"
        );
    }
}
