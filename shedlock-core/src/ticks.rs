//! Ticks of a schedule: the tick a run claims
//! ([`LockConfiguration::for_tick`](crate::LockConfiguration::for_tick)), and
//! the ticks between two claims that no replica ran (missed).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::MissedTicks;
use crate::configuration::{millis_tick, tick_millis};

/// The ticks of a schedule strictly between two of its instants (the tick
/// claimed before, and the one claimed now): `None` when there are none.
pub type MissedBetween = Arc<dyn Fn(SystemTime, SystemTime) -> Option<MissedTicks> + Send + Sync>;

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

/// The latest tick of a schedule every `every` (aligned on 1970) at or
/// before `now`.
pub(crate) fn last_tick(every: Duration, now: SystemTime) -> SystemTime {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    millis_tick(tick_millis(now) / every_ms * every_ms)
}

/// How a schedule ticking every `every` (the attribute's `every = ".."`)
/// finds the ticks strictly between two of its instants: for
/// [`run_for_tick`] with an interval schedule.
///
/// ```
/// use std::time::{Duration, SystemTime};
///
/// let missed = shedlock_core::missed_every(Duration::from_secs(60));
/// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let found = missed(start, start + Duration::from_secs(4 * 60));
/// assert_eq!(found.map(|missed| missed.count), Some(3));
/// ```
pub fn missed_every(every: Duration) -> MissedBetween {
    Arc::new(move |previous, tick| {
        let span = tick.duration_since(previous).unwrap_or_default();
        let count = u64::try_from(span.as_millis() / every.as_millis().max(1)).unwrap_or(u64::MAX);
        let count = count.saturating_sub(1);
        (count > 0).then(|| MissedTicks {
            first: previous + every,
            last: tick.checked_sub(every).unwrap_or(tick),
            count,
        })
    })
}

/// After a claim of `tick` whose claim before was `previous`: the ticks
/// between them, as the schedule the task runs for finds them, were missed.
/// They are reported: a `warn` event and the counter
/// `shedlock_missed_ticks_total` (feature `metrics`).
pub(crate) fn report_missed(
    name: &str,
    label: &crate::metrics::LockLabel,
    previous: SystemTime,
    tick: SystemTime,
) -> Option<MissedTicks> {
    let missed = SCHEDULED
        .try_with(|scheduled| (scheduled.missed_between)(previous, tick))
        .ok()
        .flatten()?;
    tracing::warn!(
        lock = %name, missed = missed.count, first = ?missed.first, last = ?missed.last,
        "ticks missed: no replica ran them between the last claimed tick and this one"
    );
    crate::metrics::missed_ticks(label, missed.count);
    Some(missed)
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
        assert_eq!(last_tick(every, at_ms(179_999)), at_ms(120_000));
        // Replicas 400 ms apart claim the same tick.
        assert_eq!(
            nearest_tick(Duration::from_secs(1), at_ms(10_200)),
            nearest_tick(Duration::from_secs(1), at_ms(9_800))
        );
    }

    #[test]
    fn ticks_strictly_between_two_claims_are_missed() {
        let missed = missed_every(Duration::from_secs(1));
        assert_eq!(missed(at_ms(1_000), at_ms(2_000)), None);
        assert_eq!(
            missed(at_ms(1_000), at_ms(7_000)),
            Some(MissedTicks {
                first: at_ms(2_000),
                last: at_ms(6_000),
                count: 5
            })
        );
        assert_eq!(missed(at_ms(7_000), at_ms(1_000)), None);
    }
}
