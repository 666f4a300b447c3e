//! Ticks of a schedule: the tick a run claims
//! ([`LockConfiguration::for_tick`](crate::LockConfiguration::for_tick)), and
//! the ticks between two claims that no replica ran (missed).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::configuration::{millis_tick, tick_millis};

/// How many ticks of a schedule lie strictly between two of its instants.
pub type MissedBetween = Arc<dyn Fn(SystemTime, SystemTime) -> u64 + Send + Sync>;

/// The tick a scheduler fires a run for, and how its schedule counts the
/// ticks between two.
#[derive(Clone)]
struct Scheduled {
    tick: SystemTime,
    missed_between: MissedBetween,
}

tokio::task_local! {
    static SCHEDULED: Scheduled;
}

/// Runs `run` as the run of `tick` of a schedule (the instant it was due,
/// by the schedule, not the clock's now): a `#[scheduler_lock]` call inside
/// claims that tick ([`LockConfiguration::for_tick`](crate::LockConfiguration::for_tick)),
/// so it runs at most once across replicas, and reports the ticks of the
/// schedule between the claim before and this one as missed
/// (`missed_between` counts them). The cron helper (`shedlock::cron`) runs
/// its jobs this way; a scheduler of another kind can too.
pub async fn run_for_tick<F: Future>(
    tick: SystemTime,
    missed_between: MissedBetween,
    run: F,
) -> F::Output {
    SCHEDULED
        .scope(
            Scheduled {
                tick,
                missed_between,
            },
            run,
        )
        .await
}

/// The tick the current task runs for (see [`run_for_tick`]), if any.
pub(crate) fn scheduled_tick() -> Option<SystemTime> {
    SCHEDULED.try_with(|scheduled| scheduled.tick).ok()
}

/// The tick of a schedule every `every` (aligned on 1970) nearest to `now`:
/// replicas whose clocks differ by less than half an interval claim the
/// same one.
pub(crate) fn nearest_tick(every: Duration, now: SystemTime) -> SystemTime {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let now_ms = tick_millis(now);
    let nearest = (now_ms + every_ms / 2) / every_ms * every_ms;
    millis_tick(nearest)
}

/// How `every`'s schedule counts the ticks strictly between two instants.
pub(crate) fn every_missed(every: Duration) -> MissedBetween {
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    Arc::new(move |previous, tick| {
        let span = tick.duration_since(previous).unwrap_or_default();
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        (span_ms / every_ms).saturating_sub(1)
    })
}

/// After a claim of `tick` whose claim before was `previous`: the ticks
/// between them, counted by the schedule the task runs for, were missed.
/// Each is reported: a `warn` event and the counter
/// `shedlock_missed_ticks_total` (feature `metrics`). The count.
pub(crate) fn report_missed(
    name: &str,
    label: &crate::metrics::LockLabel,
    previous: SystemTime,
    tick: SystemTime,
) -> u64 {
    let missed = SCHEDULED
        .try_with(|scheduled| (scheduled.missed_between)(previous, tick))
        .unwrap_or(0);
    if missed > 0 {
        tracing::warn!(
            lock = %name, missed, previous = ?previous, tick = ?tick,
            "ticks missed: no replica ran them between the last claimed tick and this one"
        );
        crate::metrics::missed_ticks(label, missed);
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: i64) -> SystemTime {
        millis_tick(ms)
    }

    #[test]
    fn the_nearest_tick_is_aligned_on_1970() {
        let every = Duration::from_secs(60);
        assert_eq!(nearest_tick(every, at_ms(120_000)), at_ms(120_000));
        assert_eq!(nearest_tick(every, at_ms(149_999)), at_ms(120_000));
        assert_eq!(nearest_tick(every, at_ms(150_000)), at_ms(180_000));
        // Replicas 400 ms apart claim the same tick.
        assert_eq!(
            nearest_tick(Duration::from_secs(1), at_ms(10_200)),
            nearest_tick(Duration::from_secs(1), at_ms(9_800))
        );
    }

    #[test]
    fn ticks_strictly_between_two_claims_are_missed() {
        let missed = every_missed(Duration::from_secs(1));
        assert_eq!(missed(at_ms(1_000), at_ms(2_000)), 0);
        assert_eq!(missed(at_ms(1_000), at_ms(7_000)), 5);
        assert_eq!(missed(at_ms(7_000), at_ms(1_000)), 0);
    }
}
