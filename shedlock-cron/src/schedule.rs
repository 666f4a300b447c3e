//! Cron expressions: a tokio-cron-scheduler job on one, or an error that names it.

use std::future::Future;

use croner::parser::{CronParser, Seconds};
use shedlock_core::LockError;
use tokio_cron_scheduler::{Job, JobSchedulerError};

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
    let parser = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build();
    let why = match parser.parse(schedule) {
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

    #[test]
    fn expressions_with_seconds_and_a_year_are_accepted() {
        for schedule in ["*/1 * * * * *", "0 0 3 * * Mon-Fri", "0 0 0 1 1 * 2099"] {
            assert!(cron_job(schedule, || async {}).is_ok(), "{schedule}");
        }
    }
}
