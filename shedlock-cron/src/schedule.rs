//! Cron expressions: a tokio-cron-scheduler job on one, or an error that names it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use shedlock_core::{LockError, MissedBetween, MissedTicks};
use tokio_cron_scheduler::{Job, JobSchedulerError};

/// The most missed ticks counted between two claims: past it, the count
/// says "at least this many" (a schedule of seconds idle for a day).
const MOST_MISSED: u64 = 100_000;

/// The instants of a cron expression, read as tokio-cron-scheduler reads it
/// (seconds required, day of month and day of week both to match, UTC).
#[derive(Clone)]
pub(crate) struct Ticks(Arc<Cron>);

impl Ticks {
    /// The instants of `schedule`; `None` when it does not parse.
    pub(crate) fn of(schedule: &str) -> Option<Ticks> {
        parser()
            .parse(schedule)
            .ok()
            .map(|cron| Ticks(Arc::new(cron)))
    }

    /// The tick a run fired at `now` (this replica's clock) is for: the
    /// schedule's latest instant at or before `now`. A replica whose clock
    /// is ahead fires early by the real clock and one behind late, but
    /// each at the instant by its own clock: both claim the same tick.
    pub(crate) fn tick_at(&self, now: SystemTime) -> SystemTime {
        // Cron's instants are whole seconds; croner keeps the fraction of
        // the instant it starts from.
        let seconds = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let now = DateTime::<Utc>::from(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        self.0
            .find_previous_occurrence(&now, true)
            .map_or_else(|_| now.into(), SystemTime::from)
    }

    /// How the schedule finds the ticks strictly between two instants.
    pub(crate) fn missed_between(&self) -> MissedBetween {
        let cron = self.0.clone();
        // One search per instant: croner 3.0's `iter_after` skips every
        // other second of a schedule of seconds.
        Arc::new(move |previous, tick| {
            let tick = DateTime::<Utc>::from(tick);
            let mut instant = DateTime::<Utc>::from(previous);
            let mut missed: Option<MissedTicks> = None;
            while missed.is_none_or(|missed| missed.count < MOST_MISSED) {
                match cron.find_next_occurrence(&instant, false) {
                    Ok(next) if next < tick => {
                        instant = next;
                        let at = SystemTime::from(next);
                        missed = Some(match missed {
                            Some(missed) => MissedTicks {
                                last: at,
                                count: missed.count + 1,
                                ..missed
                            },
                            None => MissedTicks {
                                first: at,
                                last: at,
                                count: 1,
                            },
                        });
                    }
                    _ => break,
                }
            }
            missed
        })
    }
}

/// tokio-cron-scheduler's parser, set up as it sets it up.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// A job running `run()` on each tick of `schedule` (UTC).
pub(crate) fn cron_job<F, Fut>(schedule: &str, run: F) -> Result<Job, LockError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Job::new_async(schedule, move |_job_id, _scheduler| Box::pin(run())).map_err(|err| match err {
        JobSchedulerError::ParseSchedule => invalid_schedule(schedule),
        other => LockError::InvalidConfiguration(format!(
            "tokio-cron-scheduler refused a job for cron expression '{schedule}' ({other})"
        )),
    })
}

/// The error for an expression tokio-cron-scheduler could not parse. Its
/// error does not say why, so the parser it uses is asked again, set up the
/// same way (seconds required, day-of-month and day-of-week both to match).
fn invalid_schedule(schedule: &str) -> LockError {
    let why = match parser().parse(schedule) {
        Err(reason) => format!(" ({reason})"),
        Ok(_) => String::new(),
    };
    LockError::InvalidConfiguration(format!(
        "cron expression '{schedule}' is not valid{why}; tokio-cron-scheduler reads six \
         fields, `sec min hour day-of-month month day-of-week`, and an optional seventh, the \
         year: '0 */5 * * * *' runs every five minutes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(schedule: &str) -> String {
        match cron_job(schedule, || async {}) {
            Ok(_) => format!("'{schedule}' was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn a_bad_expression_is_refused_with_its_text_and_reason() {
        let refused = refusal("61 * * * * *");
        assert!(
            refused.starts_with(
                "invalid lock configuration: cron expression '61 * * * * *' is not valid ("
            ),
            "{refused}"
        );
    }

    #[test]
    fn an_expression_without_seconds_is_refused() {
        let refused = refusal("*/5 * * * *");
        assert!(refused.contains("'*/5 * * * *'"), "{refused}");
        assert!(refused.contains("six fields"), "{refused}");
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_run_claims_a_whole_second() {
        let ticks = Ticks::of("* * * * * *");
        let late = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_400);
        assert_eq!(
            ticks.map(|ticks| ticks.tick_at(late)),
            Some(at(1_800_000_000))
        );
    }

    #[test]
    fn a_run_claims_the_latest_instant_at_or_before_its_clock() {
        let every_ten = Ticks::of("*/10 * * * * *").map(|ticks| ticks.tick_at(at(1_800_000_004)));
        assert_eq!(every_ten, Some(at(1_800_000_000)));
        let on_time = Ticks::of("*/10 * * * * *").map(|ticks| ticks.tick_at(at(1_800_000_010)));
        assert_eq!(on_time, Some(at(1_800_000_010)));
    }

    #[test]
    fn ticks_strictly_between_two_claims_are_missed() {
        let missed = Ticks::of("* * * * * *").map(|ticks| ticks.missed_between());
        let missed = missed.map(|missed| {
            [
                missed(at(1_800_000_000), at(1_800_000_001)),
                missed(at(1_800_000_000), at(1_800_000_006)),
            ]
        });
        let five = MissedTicks {
            first: at(1_800_000_001),
            last: at(1_800_000_005),
            count: 5,
        };
        assert_eq!(missed, Some([None, Some(five)]));
    }

    #[test]
    fn expressions_with_seconds_and_a_year_are_accepted() {
        for schedule in ["*/1 * * * * *", "0 0 3 * * Mon-Fri", "0 0 0 1 1 * 2099"] {
            assert!(cron_job(schedule, || async {}).is_ok(), "{schedule}");
        }
    }
}
