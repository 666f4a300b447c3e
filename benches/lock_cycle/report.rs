//! Percentiles, medians and the closing table.

use std::time::Duration;

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// One line of the summary table.
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) ours: String,
    pub(crate) floor: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: &'static str,
    pub(crate) met: Option<bool>,
}

pub(crate) fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<56} {:>14} {:>14} {:>7}  {:<16} met",
        "figure", "shedlock", "floor", "ratio", "target"
    );
    for row in rows {
        println!(
            "{:<56} {:>14} {:>14} {:>7}  {:<16} {}",
            row.figure,
            row.ours,
            row.floor,
            row.ratio.map_or("-".to_owned(), |r| format!("{r:.3}x")),
            row.target,
            match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            }
        );
    }
}
