//! Ticks of the wall clock that worker processes share: when they start,
//! the lock calls the workers report on them, and which process ran each.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::worker::{Worker, now_ms, sleep_until_ms};

/// The first tick of `period_ms` that starts at least `lead` from now: the
/// time worker processes need to start.
pub fn first_tick_after(lead: Duration, period_ms: u64) -> u64 {
    let lead_ms = u64::try_from(lead.as_millis()).unwrap_or(u64::MAX);
    now_ms() / period_ms + lead_ms / period_ms + 1
}

/// Ticks `first..=last` that worker processes share, passed to them in an
/// environment variable as `first-last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticks {
    /// The first tick.
    pub first: u64,
    /// The last tick, included.
    pub last: u64,
}

impl Ticks {
    /// `count` ticks of `period_ms`, the first one starting at least `lead` from now.
    pub fn after(lead: Duration, period_ms: u64, count: u64) -> Ticks {
        let first = first_tick_after(lead, period_ms);
        Ticks {
            first,
            last: first + count.max(1) - 1,
        }
    }

    /// The ticks a worker process was given in the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Ticks, String> {
        let text = std::env::var(var).map_err(|err| format!("{var}: {err}"))?;
        let parsed = text
            .split_once('-')
            .and_then(|(first, last)| Some((first.parse().ok()?, last.parse().ok()?)));
        match parsed {
            Some((first, last)) => Ok(Ticks { first, last }),
            None => Err(format!("{var}={text:?} is not first-last")),
        }
    }
}

impl fmt::Display for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// How long from now until tick `last` of `period_ms` has ended, plus `margin`:
/// how long the workers may take to finish.
pub fn until_tick_ends(last: u64, period_ms: u64, margin: Duration) -> Duration {
    Duration::from_millis(((last + 1) * period_ms).saturating_sub(now_ms())) + margin
}

/// Starts `count` workers running the ignored test `test`, each with `envs`
/// and, given `number_env`, its number (0, 1, …) in that variable.
pub fn spawn_workers(
    test: &str,
    count: usize,
    number_env: Option<&str>,
    envs: &[(&str, &str)],
) -> Vec<Worker> {
    (0..count)
        .map(|number| {
            let number = number.to_string();
            let mut envs = envs.to_vec();
            if let Some(number_env) = number_env {
                envs.push((number_env, &number));
            }
            Worker::spawn(test, &envs)
        })
        .collect()
}

/// Waits up to `timeout` for each worker and fails the test when one failed
/// or hung; prints the lines of their output that start with one of `echo`,
/// and returns each worker's output, in order.
pub async fn finish_workers(workers: Vec<Worker>, timeout: Duration, echo: &[&str]) -> Vec<String> {
    let mut outputs = Vec::new();
    for (number, worker) in workers.into_iter().enumerate() {
        let (status, output) = worker.finish(timeout).await;
        for line in output.lines() {
            if echo.iter().any(|prefix| line.starts_with(prefix)) {
                println!("{line}");
            }
        }
        if !status.is_some_and(|status| status.success()) {
            fail!("worker {number} failed or hung ({status:?}):\n{output}");
        }
        outputs.push(output);
    }
    outputs
}

/// One lock call of a worker process, as it reports it on a line of its
/// output: `call <tick> <start_ms> <end_ms> <outcome>`.
#[derive(Debug)]
pub struct Call {
    /// The worker's number: its place in the list of outputs.
    pub worker: usize,
    /// The tick the call was made on.
    pub tick: u64,
    /// When the call started, in wall-clock milliseconds.
    pub start_ms: u64,
    /// When the call returned, in wall-clock milliseconds.
    pub end_ms: u64,
    /// What it returned, as the worker names it (`ok`, `skip`, `err`).
    pub outcome: String,
}

impl Call {
    /// Reports, from a worker process, a call on `tick` that started at
    /// `start_ms` and has just returned `outcome`.
    pub fn report(tick: u64, start_ms: u64, outcome: &str) {
        println!("call {tick} {start_ms} {} {outcome}", now_ms());
    }

    /// The calls reported in `outputs`, one output a worker (see [`finish_workers`]).
    pub fn reported(outputs: &[String]) -> Vec<Call> {
        let mut calls = Vec::new();
        for (worker, output) in outputs.iter().enumerate() {
            for line in output.lines() {
                let Some(call) = line.strip_prefix("call ") else {
                    continue;
                };
                let fields: Vec<&str> = call.split(' ').collect();
                let [tick, start_ms, end_ms, outcome] = fields[..] else {
                    fail!("malformed call report {line:?}");
                };
                let number = |field: &str| {
                    field
                        .parse()
                        .unwrap_or_else(|_| fail!("malformed call report {line:?}"))
                };
                calls.push(Call {
                    worker,
                    tick: number(tick),
                    start_ms: number(start_ms),
                    end_ms: number(end_ms),
                    outcome: outcome.to_owned(),
                });
            }
        }
        calls
    }

    /// How long the call took, in milliseconds.
    pub fn took_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// The slowest of `calls`, after failing the test when it took `max` or longer.
    pub fn slowest_under(calls: &[Call], max: Duration) -> &Call {
        let Some(slowest) = calls.iter().max_by_key(|call| call.took_ms()) else {
            fail!("no calls reported");
        };
        assert!(
            u128::from(slowest.took_ms()) < max.as_millis(),
            "a call took {} ms: {slowest:?}",
            slowest.took_ms()
        );
        slowest
    }
}

/// A worker process's account of its calls: it reports each one as it
/// returns (see [`Call::report`]) and sums them up at the end.
#[derive(Debug)]
pub struct CallTally {
    worker: String,
    ran: Vec<u64>,
    skipped: u64,
    errors: u64,
    late: u64,
    slowest: Duration,
}

impl CallTally {
    /// The tally of worker `worker` (its name in the reports).
    pub fn new(worker: impl fmt::Display) -> CallTally {
        CallTally {
            worker: worker.to_string(),
            ran: Vec::new(),
            skipped: 0,
            errors: 0,
            late: 0,
            slowest: Duration::ZERO,
        }
    }

    /// Sleeps until wall-clock millisecond `due`; false (a missed tick,
    /// counted) when it woke more than `max_late` after it.
    pub async fn on_time(&mut self, due: u64, max_late: Duration) -> bool {
        let on_time = sleep_until_ms(due).await <= max_late;
        if !on_time {
            self.late += 1;
        }
        on_time
    }

    /// Makes `call` on `tick`, reports it and counts it: `Some` with what
    /// the job returned when it ran; a skip or an error (printed as
    /// `error worker <worker> tick <tick>: <error>`) gives `None`.
    pub async fn call<T, E: fmt::Display>(
        &mut self,
        tick: u64,
        call: impl Future<Output = Result<Option<T>, E>>,
    ) -> Option<T> {
        let start_ms = now_ms();
        let started = Instant::now();
        let result = call.await;
        self.slowest = self.slowest.max(started.elapsed());
        let (outcome, ran) = match result {
            Ok(Some(ran)) => {
                self.ran.push(tick);
                ("ok", Some(ran))
            }
            Ok(None) => {
                self.skipped += 1;
                ("skip", None)
            }
            Err(err) => {
                self.errors += 1;
                println!("error worker {} tick {tick}: {err}", self.worker);
                ("err", None)
            }
        };
        Call::report(tick, start_ms, outcome);
        ran
    }

    /// Prints the sum of the worker's calls: `worker <worker> (pid …): …`.
    pub fn print_summary(&self) {
        println!(
            "worker {} (pid {}): ran ticks {:?}, skipped {}, errors {}, woke too late {}, \
             slowest call {:?}",
            self.worker,
            std::process::id(),
            self.ran,
            self.skipped,
            self.errors,
            self.late,
            self.slowest
        );
    }
}

/// Which processes ran each tick.
#[derive(Debug, Default)]
pub struct TickRuns(BTreeMap<u64, Vec<String>>);

impl TickRuns {
    /// Records that process `pid` ran `tick`.
    pub fn record(&mut self, tick: u64, pid: impl Into<String>) {
        self.0.entry(tick).or_default().push(pid.into());
    }

    /// Fails the test unless every tick that ran did so once, within
    /// `first..=last`, and at most one in five between the first and the
    /// last that ran is missing, and at least half of them ran.
    ///
    /// A tick may be lost on a loaded machine: every worker woke too late, or
    /// the previous holder's `lock_at_least_for` still stood when it fired.
    /// Two runs of one tick never.
    pub fn assert_each_ran_once(&self, first: u64, last: u64) {
        let by_tick = &self.0;
        let twice: Vec<_> = by_tick.iter().filter(|(_, pids)| pids.len() > 1).collect();
        assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
        assert!(
            by_tick.keys().all(|tick| (first..=last).contains(tick)),
            "a tick outside {first}..={last} ran: {by_tick:?}"
        );
        let (Some(&lowest), Some(&highest)) = (by_tick.keys().next(), by_tick.keys().next_back())
        else {
            fail!("no tick ran at all");
        };
        let expected = highest - lowest + 1;
        let present = by_tick.len() as u64;
        let missing: Vec<_> = (lowest..=highest)
            .filter(|tick| !by_tick.contains_key(tick))
            .collect();
        assert!(
            present * 5 >= expected * 4,
            "only {present} of the {expected} ticks from {lowest} to {highest} ran; missing: {missing:?}"
        );
        let scheduled = last - first + 1;
        assert!(
            present * 2 >= scheduled,
            "only {present} of {scheduled} scheduled ticks ran: {by_tick:?}"
        );
    }
}

impl fmt::Display for TickRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
