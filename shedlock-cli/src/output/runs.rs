//! What the command prints of runs: `history`, a run in a cell, and what
//! `show` adds of ticks.

use serde_json::{Value, json};
use shedlock_core::RunRecord;

use super::{Format, IfEmpty, age, aligned, clean};

/// `history`: the lock's last runs, the newest first.
pub(crate) fn print_history(format: Format, name: &str, runs: &[RunRecord]) {
    match format {
        Format::Json => println!("{}", Value::Array(runs.iter().map(run_json).collect())),
        Format::Text if runs.is_empty() => println!("{}: no runs recorded", clean(name)),
        Format::Text => {
            let mut rows = vec![[
                "STARTED".to_owned(),
                "FINISHED".to_owned(),
                "DURATION".to_owned(),
                "OUTCOME".to_owned(),
                "LOCKED BY".to_owned(),
                "TOKEN".to_owned(),
            ]];
            for run in runs {
                rows.push([
                    millis_text(run.started_at),
                    millis_text(run.finished_at),
                    age(run.duration),
                    outcome_cell(run),
                    clean(&run.locked_by).if_empty("-"),
                    run.fencing_token
                        .map_or_else(|| "-".to_owned(), |token| token.to_string()),
                ]);
            }
            print!("{}", aligned(&rows));
        }
    }
}

/// The outcome of a run; for missed ticks, how many
/// (`missed 5 ticks`: from STARTED to FINISHED, no replica ran them).
fn outcome_cell(run: &RunRecord) -> String {
    match run.missed_ticks {
        Some(1) => format!("{} 1 tick", run.outcome),
        Some(count) => format!("{} {count} ticks", run.outcome),
        None => run.outcome.to_string(),
    }
}

/// A run in a few words: `ok 2024-05-01T10:00:00Z (1.2s, worker-1)`.
pub(super) fn run_cell(run: &RunRecord) -> String {
    format!(
        "{} {} ({}, {})",
        outcome_cell(run),
        humantime::format_rfc3339_seconds(run.finished_at),
        age(run.duration),
        clean(&run.locked_by).if_empty("-"),
    )
}

pub(super) fn run_json(run: &RunRecord) -> Value {
    json!({
        "started_at": millis_text(run.started_at),
        "finished_at": millis_text(run.finished_at),
        "duration_ms": run.duration.as_millis(),
        "outcome": run.outcome.as_str(),
        "locked_by": run.locked_by,
        "fencing_token": run.fencing_token,
        "missed_ticks": run.missed_ticks,
    })
}

/// What `show` tells beside the lock's state: its last run, the last tick
/// claimed, and the newest entry of ticks no replica ran.
pub(crate) struct Recent<'a> {
    pub(crate) last_run: Option<&'a RunRecord>,
    pub(crate) last_tick: Option<std::time::SystemTime>,
    pub(crate) missed: Option<&'a RunRecord>,
}

pub(super) fn millis_text(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// A `missed` entry: how many ticks, the first and the last.
pub(super) fn missed_json(missed: &RunRecord) -> Value {
    json!({
        "count": missed.missed_ticks,
        "first": millis_text(missed.started_at),
        "last": millis_text(missed.finished_at),
    })
}
