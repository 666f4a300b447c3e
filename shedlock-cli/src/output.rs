//! What the command prints: aligned text tables for people, JSON for scripts.

use std::time::Duration;

use std::fmt::Write as _;

use serde_json::{Value, json};
use shedlock_core::{LockHolder, LockMode, LockState, RunRecord};

mod runs;

pub(crate) use runs::{Recent, print_history};
use runs::{millis_text, missed_json, run_cell, run_json};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// `list`: each lock with its last run (`None`: none recorded, or a store
/// that keeps no history).
/// `list`: a table, or a JSON array of the locks.
pub(crate) fn print_list(format: Format, locks: &[(LockState, Option<RunRecord>)]) {
    match format {
        Format::Json => {
            let items: Vec<Value> = locks
                .iter()
                .map(|(lock, last_run)| state_json(lock, None, last_run.as_ref()))
                .collect();
            println!("{}", Value::Array(items));
        }
        Format::Text => print!("{}", list_table(locks)),
    }
}

/// `show` and the changes that print the lock after: the lock, where it
/// lives (`("key", ..)` on Redis, `("table", ..)` on SQL stores).
pub(crate) fn print_state(
    format: Format,
    state: &LockState,
    location: (&str, String),
    action: Option<&str>,
    recent: &Recent<'_>,
) {
    match format {
        Format::Json => {
            let mut json = state_json(state, action, recent.last_run);
            if let Some(fields) = json.as_object_mut() {
                fields.insert(
                    "last_tick".to_owned(),
                    json!(recent.last_tick.map(millis_text)),
                );
                fields.insert(
                    "missed_ticks".to_owned(),
                    json!(recent.missed.map(missed_json)),
                );
            }
            println!("{json}");
        }
        Format::Text => {
            if let Some(action) = action {
                println!("{}: {action}", clean(&state.name));
            }
            print!("{}", state_text(state, location));
            println!(
                "last run:  {}",
                recent
                    .last_run
                    .map_or_else(|| "none recorded".to_owned(), run_cell)
            );
            if let Some(tick) = recent.last_tick {
                println!("last tick: {}", millis_text(tick));
            }
            if let Some(missed) = recent.missed {
                println!("missed:    {} (no replica ran them)", run_cell(missed));
            }
        }
    }
}

/// `prune`: how many locks' rows went (`None`: a store with nothing to prune).
pub(crate) fn print_pruned(
    format: Format,
    unused_for: Duration,
    table: Option<&str>,
    pruned: Option<u64>,
) {
    let unused_for_text = humantime::format_duration(unused_for).to_string();
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "action": "pruned",
                "unused_for": unused_for_text,
                "unused_for_ms": unused_for.as_millis(),
                "table": table,
                "pruned": pruned.unwrap_or(0),
            })
        ),
        Format::Text => match (pruned, table) {
            (Some(pruned), Some(table)) => println!(
                "pruned {pruned} lock{} unused for {unused_for_text} from table {table} \
                 (held locks, capacities and pauses are kept)",
                if pruned == 1 { "" } else { "s" }
            ),
            _ => println!(
                "nothing to prune on Redis: lock keys end with their lease, fencing counters \
                 expire a week after their last use, run histories 30 days after their last \
                 run, and capacities and pauses stay as operators set them"
            ),
        },
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
fn list_table(locks: &[(LockState, Option<RunRecord>)]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "KIND".to_owned(),
        "HOLDERS".to_owned(),
        "LOCKED BY".to_owned(),
        "LOCKED AT".to_owned(),
        "TIME LEFT".to_owned(),
        "TERM".to_owned(),
        "RENEWED".to_owned(),
        "CAPACITY".to_owned(),
        "PAUSED".to_owned(),
        "LAST RUN".to_owned(),
    ]];
    for (lock, last_run) in locks {
        let latest = lock
            .holders
            .iter()
            .max_by_key(|holder| holder.lease_left.unwrap_or(Duration::MAX));
        let mut locked_by: Vec<&str> = lock.holders.iter().map(|h| h.locked_by.as_str()).collect();
        locked_by.sort_unstable();
        locked_by.dedup();
        rows.push([
            clean(&lock.name),
            lock_kind(lock).unwrap_or("-").to_owned(),
            holders_summary(lock),
            clean(&locked_by.join(", ")).if_empty("-"),
            latest.and_then(|holder| holder.locked_at).map_or_else(
                || "-".to_owned(),
                |at| humantime::format_rfc3339_seconds(at).to_string(),
            ),
            latest.map_or_else(|| "-".to_owned(), |holder| time_left(holder.lease_left)),
            latest
                .and_then(|holder| holder.fencing_token)
                .map_or_else(|| "-".to_owned(), |token| token.to_string()),
            latest.map_or_else(|| "-".to_owned(), renewed_cell),
            lock.capacity
                .map_or_else(|| "default".to_owned(), |capacity| capacity.to_string()),
            if lock.paused { "yes" } else { "no" }.to_owned(),
            last_run.as_ref().map_or_else(|| "-".to_owned(), run_cell),
        ]);
    }
    if locks.is_empty() {
        return "no locks are held or configured\n".to_owned();
    }
    aligned(&rows)
}

/// Rows as text, columns aligned, two spaces apart.
fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
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
fn state_text(state: &LockState, location: (&str, String)) -> String {
    let mut text = String::new();
    let (label, place) = location;
    let _ = writeln!(text, "lock:      {}", clean(&state.name));
    let _ = writeln!(text, "{:<11}{}", format!("{label}:"), clean(&place));
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
        let _ = writeln!(
            text,
            "    kind: {}, term: {}, last renewal: {}",
            holder_kind(&state.name, holder),
            holder
                .fencing_token
                .map_or_else(|| "unknown".to_owned(), |token| token.to_string()),
            last_renewal(holder),
        );
    }
    text
}

/// What a lease looks like it is for, from its name and how its holder keeps
/// it: `scope` for a scope's owner (the name starts with `scope:`), `lease`
/// for an exclusive holder that renews its lease (a leader, a keep-alive
/// job), `job` otherwise (a run that takes the lock and gives it back).
fn holder_kind(name: &str, holder: &LockHolder) -> &'static str {
    if name.starts_with(SCOPE_PREFIX) {
        "scope"
    } else if holder.mode == LockMode::Exclusive && holder.renewals.is_some_and(|n| n > 0) {
        "lease"
    } else {
        "job"
    }
}

/// The lock names under which scopes' owners hold their leases.
const SCOPE_PREFIX: &str = "scope:";

/// The kind of a lock as `list` shows it: its holders' (`lease` if any holder
/// renews), `scope` for a scope's lock even while nobody owns it; `None` for
/// a free lock that is not a scope's.
fn lock_kind(lock: &LockState) -> Option<&'static str> {
    if lock.name.starts_with(SCOPE_PREFIX) {
        return Some("scope");
    }
    let mut kinds = lock
        .holders
        .iter()
        .map(|holder| holder_kind(&lock.name, holder));
    if kinds.clone().any(|kind| kind == "lease") {
        return Some("lease");
    }
    kinds.next()
}

/// The `RENEWED` cell: how long ago the holder last renewed its lease;
/// `never` when the store counts renewals and there were none; `-` unknown.
fn renewed_cell(holder: &LockHolder) -> String {
    match (holder.renewals, holder.renewed_ago) {
        (Some(0), _) => "never".to_owned(),
        (Some(_), Some(ago)) => format!("{} ago", age(ago)),
        _ => "-".to_owned(),
    }
}

/// `show`'s "last renewal: ...".
fn last_renewal(holder: &LockHolder) -> String {
    match (holder.renewals, holder.renewed_ago) {
        (Some(0), Some(ago)) => format!("none yet (taken {} ago)", age(ago)),
        (Some(0), None) => "none yet".to_owned(),
        (Some(renewals), Some(ago)) => format!(
            "{} ago ({renewals} renewal{})",
            age(ago),
            if renewals == 1 { "" } else { "s" }
        ),
        _ => "unknown (not renewed yet, or not recorded by the store)".to_owned(),
    }
}

/// A short age: `0.25s`, `1.2s`, `42s`, then `3m 12s`.
fn age(ago: Duration) -> String {
    let millis = ago.as_millis();
    if millis < 1_000 {
        format!("{:.2}s", ago.as_secs_f64())
    } else if millis < 10_000 {
        format!("{:.1}s", ago.as_secs_f64())
    } else if millis < 60_000 {
        format!("{}s", ago.as_secs())
    } else {
        humantime::format_duration(Duration::from_secs(ago.as_secs())).to_string()
    }
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

fn state_json(state: &LockState, action: Option<&str>, last_run: Option<&RunRecord>) -> Value {
    let mut json = json!({
        "name": state.name,
        "kind": lock_kind(state),
        "capacity": state.capacity,
        "paused": state.paused,
        "exclusive_waiters": state.exclusive_waiters,
        "permits_held": state.permits_held(),
        "holders": state
            .holders
            .iter()
            .map(|holder| holder_json(&state.name, holder))
            .collect::<Vec<_>>(),
        "last_run": last_run.map(run_json),
    });
    if let (Some(action), Some(fields)) = (action, json.as_object_mut()) {
        fields.insert("action".to_owned(), json!(action));
    }
    json
}

fn holder_json(name: &str, holder: &LockHolder) -> Value {
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
        "kind": holder_kind(name, holder),
        "term": holder.fencing_token,
        "renewed_ago_ms": holder.renewed_ago.map(|ago| ago.as_millis()),
        "renewals": holder.renewals,
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
        let text = state_json(&state, None, None).to_string();
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
                renewed_ago: None,
                renewals: None,
            }],
            capacity: Some(0),
            paused: true,
            exclusive_waiters: 0,
        };
        let table = list_table(&[(lock, None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert_eq!(
            lines[0].find("HOLDERS"),
            lines[1].find("exclusive"),
            "{table}"
        );
        assert!(
            lines[1].contains("1s 500ms") && lines[1].ends_with("yes     -"),
            "{table}"
        );
    }

    fn holder(mode: LockMode, renewals: Option<u64>, renewed_ago_ms: Option<u64>) -> LockHolder {
        LockHolder {
            locked_by: "host:1".to_owned(),
            locked_at: None,
            lease_left: Some(Duration::from_secs(2)),
            mode,
            fencing_token: Some(42),
            renewed_ago: renewed_ago_ms.map(Duration::from_millis),
            renewals,
        }
    }

    fn lock(name: &str, holders: Vec<LockHolder>) -> LockState {
        LockState {
            name: name.to_owned(),
            holders,
            capacity: None,
            paused: false,
            exclusive_waiters: 0,
        }
    }

    #[test]
    fn kinds_tell_scopes_renewing_leases_and_jobs_apart() {
        let leader = holder(LockMode::Exclusive, Some(3), Some(120));
        let job = holder(LockMode::Exclusive, Some(0), Some(5_000));
        let unknown = holder(LockMode::Exclusive, None, None);
        let reader = holder(LockMode::Shared { permits: 1 }, Some(2), Some(10));
        assert_eq!(holder_kind("scheduler", &leader), "lease");
        assert_eq!(holder_kind("scheduler", &job), "job");
        assert_eq!(holder_kind("scheduler", &unknown), "job");
        assert_eq!(holder_kind("catalog", &reader), "job");
        assert_eq!(holder_kind("scope:tenant-7", &leader), "scope");
        assert_eq!(holder_kind("scope:tenant-7", &unknown), "scope");
        assert_eq!(lock_kind(&lock("free", Vec::new())), None);
        assert_eq!(lock_kind(&lock("scope:idle", Vec::new())), Some("scope"));
        assert_eq!(
            lock_kind(&lock("scheduler", vec![leader.clone()])),
            Some("lease")
        );
        assert_eq!(lock_kind(&lock("nightly", vec![job.clone()])), Some("job"));
    }

    #[test]
    fn list_and_show_give_the_term_and_the_last_renewal() {
        let leader = holder(LockMode::Exclusive, Some(3), Some(1_234));
        let table = list_table(&[(lock("scheduler", vec![leader.clone()]), None)]);
        let lines: Vec<&str> = table.lines().collect();
        for column in ["KIND", "TERM", "RENEWED"] {
            assert!(lines[0].contains(column), "{table}");
        }
        assert_eq!(lines[0].find("TERM"), lines[1].find("42"), "{table}");
        assert_eq!(
            lines[0].find("RENEWED"),
            lines[1].find("1.2s ago"),
            "{table}"
        );
        assert_eq!(lines[0].find("KIND"), lines[1].find("lease"), "{table}");
        let shown = state_text(
            &lock("scheduler", vec![leader.clone()]),
            ("key", "k".to_owned()),
        );
        assert!(
            shown.contains("kind: lease, term: 42, last renewal: 1.2s ago (3 renewals)"),
            "{shown}"
        );
        let json = state_json(&lock("scheduler", vec![leader]), None, None);
        let holder = &json["holders"][0];
        assert_eq!(holder["term"], 42);
        assert_eq!(holder["renewed_ago_ms"], 1234);
        assert_eq!(holder["kind"], "lease");
        assert_eq!(holder["renewals"], 3);
        assert_eq!(json["kind"], "lease");
    }

    #[test]
    fn renewal_cells_say_never_or_unknown_honestly() {
        let never = holder(LockMode::Exclusive, Some(0), Some(3_000));
        assert_eq!(renewed_cell(&never), "never");
        assert_eq!(last_renewal(&never), "none yet (taken 3.0s ago)");
        let unknown = holder(LockMode::Exclusive, None, None);
        assert_eq!(renewed_cell(&unknown), "-");
        assert!(last_renewal(&unknown).starts_with("unknown"));
        assert_eq!(age(Duration::from_millis(250)), "0.25s");
        assert_eq!(age(Duration::from_millis(42_900)), "42s");
        assert_eq!(age(Duration::from_secs(192)), "3m 12s");
    }
}
