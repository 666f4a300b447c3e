//! The lock kinds as a user writes them, with `#[scheduler_lock]`, against a
//! real, private redis-server: exclusive and shared jobs, counted jobs,
//! pause and resume, and a holder process killed in the middle of its run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shedlock::admin::LockAdmin;
use shedlock::redis::RedisLockProvider;
use shedlock::{LockError, LockMode, LockProvider as _, scheduler_lock};
use shedlock_test_support::Worker;
use shedlock_test_support::conformance::acquire;
use shedlock_test_support::redis::RedisServer;
use shedlock_test_support::ticks::{finish_workers, spawn_workers};

/// One job's run: name, start, end.
type Run = (&'static str, Instant, Instant);

/// When each job ran.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<Run>>>);

impl Runs {
    /// A run of `job`, `length` long, to record here.
    fn job(&self, job: &'static str, length: Duration) -> Job<'_> {
        Job {
            runs: self,
            name: job,
            length,
        }
    }

    fn record(&self, job: &'static str, start: Instant, end: Instant) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((job, start, end));
    }

    /// The start and end of each of `jobs`.
    fn get_all<const N: usize>(&self, jobs: [&str; N]) -> [(Instant, Instant); N] {
        jobs.map(|job| self.get(job))
    }

    fn get(&self, job: &str) -> (Instant, Instant) {
        let runs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match runs.iter().find(|(name, ..)| *name == job) {
            Some((_, start, end)) => (*start, *end),
            None => panic!(
                "{job} never ran; runs: {:?}",
                runs.iter().map(|r| r.0).collect::<Vec<_>>()
            ),
        }
    }
}

async fn connect(server: &RedisServer) -> RedisLockProvider {
    RedisLockProvider::connect(server.url())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

// The order keeps every attribute beside a different one: the jobs differ
// in their attribute only.
#[scheduler_lock(name = "{lock}", lock_at_most_for = "30s", mode = "exclusive", provider = provider)]
async fn exclusive_job(provider: &RedisLockProvider, lock: &str, job: Job<'_>) {
    job.run().await;
}

#[scheduler_lock(name = "{lock}", lock_at_most_for = "30s", permits = 3, capacity = 9, provider = provider)]
async fn counted_job(provider: &RedisLockProvider, lock: &str, job: Job<'_>) {
    job.run().await;
}

#[scheduler_lock(name = "{lock}", lock_at_most_for = "30s", mode = "exclusive", wait_for = "20s", provider = provider)]
async fn exclusive_job_waiting(provider: &RedisLockProvider, lock: &str, job: Job<'_>) {
    job.run().await;
}

/// One run of a job, to record in `runs`: its name and how long it takes.
struct Job<'a> {
    runs: &'a Runs,
    name: &'static str,
    length: Duration,
}

impl Job<'_> {
    async fn run(self) {
        let start = Instant::now();
        tokio::time::sleep(self.length).await;
        self.runs.record(self.name, start, Instant::now());
    }
}

#[scheduler_lock(name = "{lock}", lock_at_most_for = "30s", mode = "shared", wait_for = "20s", provider = provider)]
async fn shared_job_waiting(provider: &RedisLockProvider, lock: &str, job: Job<'_>) {
    job.run().await;
}

#[scheduler_lock(name = "{lock}", lock_at_most_for = "30s", mode = "shared", provider = provider)]
async fn shared_job(provider: &RedisLockProvider, lock: &str, job: Job<'_>) {
    job.run().await;
}

/// The result of an operator's call, which must succeed.
async fn admin<T>(call: impl Future<Output = Result<T, LockError>>) -> T {
    call.await
        .unwrap_or_else(|err| panic!("an operator's call failed: {err}"))
}

/// Makes an operator's call after `delay`; returns when it was done.
async fn admin_after<T>(
    delay: Duration,
    call: impl Future<Output = Result<T, LockError>>,
) -> Instant {
    tokio::time::sleep(delay).await;
    admin(call).await;
    Instant::now()
}

/// Each scenario's jobs on connections of their own.
async fn replicas(server: &RedisServer) -> [RedisLockProvider; 4] {
    [
        connect(server).await,
        connect(server).await,
        connect(server).await,
        connect(server).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_jobs_skip_or_wait_while_an_exclusive_job_runs() {
    let server = RedisServer::start();
    let [p1, p2, p3, p4] = replicas(&server).await;
    let runs = Runs::default();
    let lock = "catalog-1";
    let job1 = exclusive_job(&p1, lock, runs.job("job1", Duration::from_millis(600)));
    let later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Skipping: refused at once while job1 runs.
        let skipped = shared_job(&p4, lock, runs.job("skipped", Duration::ZERO)).await;
        assert!(
            matches!(skipped, Ok(None)),
            "a shared job ran beside job1: {skipped:?}"
        );
        // Waiting: they run after job1, together.
        tokio::join!(
            shared_job_waiting(&p2, lock, runs.job("job2", Duration::from_millis(300))),
            shared_job_waiting(&p3, lock, runs.job("job3", Duration::from_millis(300))),
        )
    };
    let (ran1, (ran2, ran3)) = tokio::join!(job1, later);
    assert!(matches!(ran1, Ok(Some(()))), "{ran1:?}");
    assert!(
        matches!(ran2, Ok(Some(()))) && matches!(ran3, Ok(Some(()))),
        "{ran2:?} {ran3:?}"
    );
    let [(_, end1), (start2, end2), (start3, end3)] = runs.get_all(["job1", "job2", "job3"]);
    assert!(
        start2 >= end1 && start3 >= end1,
        "a shared job started before job1 ended"
    );
    assert!(
        start2 < end3 && start3 < end2,
        "the shared jobs did not run together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_job_waits_for_running_shared_jobs_and_goes_before_new_ones() {
    let server = RedisServer::start();
    let [p1, p2, p3, p4] = replicas(&server).await;
    let lock = "catalog-2";
    let runs = Runs::default();
    let shared = async {
        tokio::join!(
            shared_job(&p2, lock, runs.job("job2", Duration::from_millis(500))),
            shared_job(&p3, lock, runs.job("job3", Duration::from_millis(700))),
        )
    };
    let exclusive = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        exclusive_job_waiting(&p1, lock, runs.job("job1", Duration::from_millis(300))).await
    };
    let newcomer = async {
        // Once job1 waits, a new shared job waits behind it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let state = p4
            .lock_state(lock)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(state.exclusive_waiters, 1, "job1 is not queued: {state:?}");
        shared_job_waiting(&p4, lock, runs.job("job4", Duration::from_millis(50))).await
    };
    let ((ran2, ran3), ran1, ran4) = tokio::join!(shared, exclusive, newcomer);
    for ran in [ran1, ran2, ran3, ran4] {
        assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    }
    let [(start1, end1), (_, end2), (_, end3), (start4, _)] =
        runs.get_all(["job1", "job2", "job3", "job4"]);
    assert!(
        start1 >= end2 && start1 >= end3,
        "job1 started before the shared jobs ended"
    );
    assert!(start4 >= end1, "job4 jumped the queued exclusive job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_jobs_three_of_three_permits_run_and_a_fourth_is_refused() {
    let server = RedisServer::start();
    let providers = replicas(&server).await;
    let runs = Runs::default();
    let lock = "exports";
    let length = Duration::from_millis(500);
    let [p1, p2, p3, p4] = &providers;
    let (a, b, c, d) = tokio::join!(
        counted_job(p1, lock, runs.job("a", length)),
        counted_job(p2, lock, runs.job("b", length)),
        counted_job(p3, lock, runs.job("c", length)),
        counted_job(p4, lock, runs.job("d", length)),
    );
    let results = [a, b, c, d];
    let ran = results.iter().filter(|r| matches!(r, Ok(Some(())))).count();
    let skipped = results.iter().filter(|r| matches!(r, Ok(None))).count();
    assert_eq!((ran, skipped), (3, 1), "{results:?}");
    let spans: Vec<_> = runs.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let latest_start = spans.iter().map(|s| s.1).max();
    let earliest_end = spans.iter().map(|s| s.2).min();
    assert!(
        latest_start < earliest_end,
        "the three did not run at the same time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_locks_skip_every_job_and_resumed_ones_run_them() {
    const LOCKS: [&str; 3] = [
        "maintenance-ordinary",
        "maintenance-shared",
        "maintenance-counted",
    ];
    let server = RedisServer::start();
    let [operator, p1, p2, _] = replicas(&server).await;
    let runs = Runs::default();
    for lock in LOCKS {
        admin(operator.pause(lock)).await;
    }
    let short = Duration::from_millis(10);
    assert!(matches!(
        exclusive_job(&p1, "maintenance-ordinary", runs.job("x", short)).await,
        Ok(None)
    ));
    assert!(matches!(
        shared_job(&p1, "maintenance-shared", runs.job("s", short)).await,
        Ok(None)
    ));
    assert!(matches!(
        counted_job(&p2, "maintenance-counted", runs.job("c", short)).await,
        Ok(None)
    ));
    let listed = admin(operator.list_locks()).await;
    assert_eq!(
        listed.iter().filter(|lock| lock.paused).count(),
        3,
        "{listed:?}"
    );

    // A waiting job starts when the lock is resumed.
    let waiting = shared_job_waiting(&p2, "maintenance-shared", runs.job("waiter", short));
    let resume = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for lock in LOCKS {
            admin(operator.resume(lock)).await;
        }
        Instant::now()
    };
    let (waited, resumed_at) = tokio::join!(waiting, resume);
    assert!(matches!(waited, Ok(Some(()))), "{waited:?}");
    assert!(
        runs.get("waiter").0 >= resumed_at - Duration::from_millis(5),
        "ran while paused"
    );
    assert!(matches!(
        exclusive_job(&p1, "maintenance-ordinary", runs.job("x", short)).await,
        Ok(Some(()))
    ));
    assert!(matches!(
        counted_job(&p2, "maintenance-counted", runs.job("c", short)).await,
        Ok(Some(()))
    ));
}

const HOLDER_URL_ENV: &str = "SHEDLOCK_KINDS_HOLDER_URL";
const KILLED_LOCK: &str = "killed-counted";
const KILLED_LEASE: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_permits_return_at_its_lease_end() {
    let server = RedisServer::start();
    let observer = connect(&server).await;
    let mut holder = Worker::spawn("counted_holder_process", &[(HOLDER_URL_ENV, server.url())]);
    let holder_name = format!("holder-{}", holder.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = loop {
        let state = observer
            .lock_state(KILLED_LOCK)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        if let Some(held) = state.holders.iter().find(|h| h.locked_by == holder_name) {
            assert_eq!(held.mode, LockMode::Shared { permits: 3 });
            break held.lease_left;
        }
        if Instant::now() > deadline {
            panic!(
                "the holder never took its permits:\n{}",
                holder.kill_and_output()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    holder.kill();
    let killed_at = Instant::now();
    let lease_left = left.unwrap_or_else(|| panic!("the holder's lease has no end"));
    // All 3 of 3 permits are the dead holder's until its lease ends.
    let config =
        shedlock::LockConfiguration::new(KILLED_LOCK, Duration::from_secs(30), Duration::ZERO)
            .and_then(|config| config.with_permits(1))
            .and_then(|config| config.with_capacity(3))
            .unwrap_or_else(|err| panic!("{err}"));
    let mut refused = 0;
    let taken_at = loop {
        match observer.try_lock(&config).await {
            Ok(Some(guard)) => {
                let at = Instant::now();
                let _ = guard.unlock().await;
                break at;
            }
            Ok(None) => refused += 1,
            Err(err) => panic!("{err}"),
        }
        if killed_at.elapsed() > KILLED_LEASE + Duration::from_secs(5) {
            panic!("the dead holder's permits never came back");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused > 0, "the dead holder's permits were free at once");
    // The lease ended at most `lease_left` after it was read (just before the kill).
    assert!(
        taken_at <= killed_at + lease_left + Duration::from_millis(500),
        "the permits came back {:?} after the kill; the lease had {lease_left:?} left",
        taken_at - killed_at
    );
    assert!(taken_at >= killed_at + lease_left.saturating_sub(Duration::from_millis(100)));
}

/// The holder process: takes 3 of 3 permits with a short lease and runs
/// forever, until the test kills it. Does nothing unless run by the test.
#[tokio::test]
#[ignore = "a worker process of a_killed_holders_permits_return_at_its_lease_end"]
async fn counted_holder_process() {
    let Ok(url) = std::env::var(HOLDER_URL_ENV) else {
        return;
    };
    let provider = RedisLockProvider::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .with_locked_by(format!("holder-{}", std::process::id()));
    let config = shedlock::LockConfiguration::new(KILLED_LOCK, KILLED_LEASE, Duration::ZERO)
        .and_then(|config| config.with_permits(3))
        .and_then(|config| config.with_capacity(3))
        .unwrap_or_else(|err| panic!("{err}"));
    let executor = shedlock::LockingTaskExecutor::new(provider);
    let ran = executor
        .execute(&config, std::future::pending::<()>())
        .await;
    panic!("the holder's job ended: {ran:?}");
}

const MIX_URL_ENV: &str = "SHEDLOCK_KINDS_MIX_URL";
const MIX_WORKER_ENV: &str = "SHEDLOCK_KINDS_MIX_WORKER";
const MIX_LOCK: &str = "mixed-processes";
/// Every run is pushed here as `kind start_ms end_ms`.
const MIX_RUNS: &str = "mixed-runs";
const MIX_CAPACITY: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_exceed_the_capacity_or_share_an_exclusive_run() {
    let server = RedisServer::start();
    let workers = spawn_workers(
        "mixed_worker_process",
        4,
        Some(MIX_WORKER_ENV),
        &[(MIX_URL_ENV, server.url())],
    );
    finish_workers(workers, Duration::from_secs(30), &[]).await;
    let reply = server.command(&format!("LRANGE {MIX_RUNS} 0 -1"));
    // Inline reply: `*n`, then `$len` / value lines.
    let runs: Vec<(String, u64, u64)> = reply
        .lines()
        .filter(|line| line.starts_with("shared") || line.starts_with("exclusive"))
        .map(|line| {
            let mut parts = line.split(' ');
            let kind = parts.next().unwrap_or_default().to_owned();
            let mut number = || {
                parts
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("bad run {line}"))
            };
            (kind, number(), number())
        })
        .collect();
    let shared = runs.iter().filter(|run| run.0 == "shared").count();
    let exclusive = runs.len() - shared;
    assert!(
        shared >= 10 && exclusive >= 3,
        "too few runs: {shared} shared, {exclusive} exclusive"
    );
    // Sweep the intervals, ends before starts at one instant: never more
    // than the capacity of shared runs, never two exclusive runs, never an
    // exclusive run beside a shared one.
    let mut events: Vec<(u64, bool, &str)> = Vec::new();
    for (kind, start, end) in &runs {
        events.push((*start, true, kind.as_str()));
        events.push((*end, false, kind.as_str()));
    }
    events.sort();
    let (mut shared_in, mut exclusive_in) = (0u32, 0u32);
    for (at, starts, kind) in events {
        let count = if kind == "exclusive" {
            &mut exclusive_in
        } else {
            &mut shared_in
        };
        if starts {
            *count += 1;
        } else {
            *count -= 1;
        }
        assert!(
            shared_in <= MIX_CAPACITY && exclusive_in <= 1 && (exclusive_in == 0 || shared_in == 0),
            "at {at} ms {shared_in} shared and {exclusive_in} exclusive runs held the lock"
        );
    }
}

/// A worker of `four_processes_never_exceed_the_capacity_or_share_an_exclusive_run`:
/// for 3 s, worker 3 (the last) runs exclusive jobs, the others shared ones, each 20 ms
/// long, as often as they get the lock. Does nothing unless run by the test.
#[tokio::test]
#[ignore = "a worker process of four_processes_never_exceed_the_capacity_or_share_an_exclusive_run"]
async fn mixed_worker_process() {
    let (Ok(url), Ok(worker)) = (std::env::var(MIX_URL_ENV), std::env::var(MIX_WORKER_ENV)) else {
        return;
    };
    let provider = connect_url(&url).await;
    let exclusive = worker == "3";
    let config =
        shedlock::LockConfiguration::new(MIX_LOCK, Duration::from_secs(10), Duration::ZERO)
            .and_then(|config| {
                if exclusive {
                    Ok(config)
                } else {
                    config.with_permits(1)
                }
            })
            .and_then(|config| config.with_capacity(MIX_CAPACITY))
            .unwrap_or_else(|err| panic!("{err}"));
    let executor = shedlock::LockingTaskExecutor::new(provider);
    let mut records = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await,
        Err(err) => Err(err),
    }
    .unwrap_or_else(|err| panic!("{err}"));
    let kind = if exclusive { "exclusive" } else { "shared" };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let ran = executor
            .execute_waiting(&config, Duration::from_secs(2), async {
                let start = shedlock_test_support::now_ms();
                tokio::time::sleep(Duration::from_millis(20)).await;
                (start, shedlock_test_support::now_ms())
            })
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        if let Some((start, end)) = ran {
            let _: i64 = redis::cmd("RPUSH")
                .arg(MIX_RUNS)
                .arg(format!("{kind} {start} {end}"))
                .query_async(&mut records)
                .await
                .unwrap_or_else(|err| panic!("{err}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connect_url(url: &str) -> RedisLockProvider {
    RedisLockProvider::connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test Redis: {err}"))
}

/// Fails the test unless a waiting job ran, and started within 200 ms of
/// the change that let it in (`after`).
fn assert_started_at_once(
    ran: Result<Option<()>, LockError>,
    started: Instant,
    changed_at: Instant,
    after: &str,
) {
    assert!(matches!(ran, Ok(Some(()))), "{ran:?}");
    let late = started.saturating_duration_since(changed_at);
    assert!(
        late < Duration::from_millis(200),
        "started {late:?} after {after}"
    );
}

/// Resuming and raising the capacity are published like releases: a waiter
/// that has backed off to its longest poll still starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_and_capacity_changes_wake_waiters_at_once() {
    let server = RedisServer::start();
    let [operator, waiter, holder, _] = replicas(&server).await;
    let runs = Runs::default();
    let short = Duration::from_millis(10);

    admin(operator.pause("wake-resume")).await;
    let waiting = exclusive_job_waiting(&waiter, "wake-resume", runs.job("resumed", short));
    // The waiter's polls back off to 500 ms: at about 1.13 s, 1.63 s and
    // 2.13 s. Resuming at 1.7 s, only the notification starts it in time.
    let resume = admin_after(Duration::from_millis(1700), operator.resume("wake-resume"));
    let (ran, resumed_at) = tokio::join!(waiting, resume);
    assert_started_at_once(ran, runs.get("resumed").0, resumed_at, "the resume");

    let config =
        shedlock::LockConfiguration::new("wake-capacity", Duration::from_secs(30), Duration::ZERO)
            .and_then(|config| config.with_permits(1))
            .and_then(|config| config.with_capacity(1))
            .unwrap_or_else(|err| panic!("{err}"));
    let held = acquire(&holder, &config).await;
    let waiting = shared_job_waiting(&waiter, "wake-capacity", runs.job("raised", short));
    let raise = admin_after(
        Duration::from_millis(1700),
        operator.set_capacity("wake-capacity", 2),
    );
    // The attribute's default capacity is unlimited for shared jobs: the stored 1 wins until raised.
    admin(operator.set_capacity("wake-capacity", 1)).await;
    let (ran, raised_at) = tokio::join!(waiting, raise);
    assert_started_at_once(
        ran,
        runs.get("raised").0,
        raised_at,
        "the capacity was raised",
    );
    let _ = held.unlock().await;
}
