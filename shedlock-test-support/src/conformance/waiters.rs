//! Contention and waiting: no lost updates under concurrency, waiters and
//! their bounds, retries, keep-alive through a long job and cancellation
//! on lease loss.

use super::assert_lease_lost;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shedlock_core::{ExecutionOptions, LockProvider, is_lease_lost};

use super::{Make, WaitingJob, acquire, config, config_named, unique_name, unlock};

/// 8 tasks (each with its own provider) on 2 names run a non-atomic
/// read–sleep–write counter under the lock: no update is lost.
pub async fn no_lost_updates_under_concurrency<P: LockProvider>(make: impl Make<P>) {
    const TASKS: usize = 8;
    const ATTEMPTS: usize = 60;
    let names = [unique_name("fuzz-a"), unique_name("fuzz-b")];
    let counters: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let runs: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let executor = make.executor().await;
        let configs = names.clone().map(|name| config_named(&name));
        let (counters, runs) = (counters.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            for attempt in 0..ATTEMPTS {
                let which = (task + attempt) % 2;
                let counter = &counters[which];
                let ran = executor
                    .execute(&configs[which], async {
                        let seen = counter.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        counter.store(seen + 1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap_or_else(|err| fail!("execute failed: {err}"));
                if ran.is_some() {
                    runs[which].fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        if let Err(err) = task.await {
            fail!("a fuzz task failed: {err}");
        }
    }
    for which in 0..2 {
        let (counter, ran) = (
            counters[which].load(Ordering::SeqCst),
            runs[which].load(Ordering::SeqCst),
        );
        assert!(ran > 0, "no task ever got lock {which}");
        assert_eq!(
            counter, ran,
            "lock {which}: {ran} runs but the counter says {counter}: an update was lost"
        );
    }
}

/// A waiter runs as soon as the holder releases, long before its bound.
pub async fn waiter_runs_right_after_release<P: LockProvider>(make: impl Make<P>) {
    let (waiter, holder) = make.executor_and_other().await;
    let config = config_named(&unique_name("waiter"));
    let guard = acquire(&holder, &config).await;
    WaitingJob::spawn(waiter, config)
        .let_in("the release", Duration::from_secs(10), unlock(guard))
        .await;
}

/// A waiter gives `Ok(None)` once `wait_for` passes, not before.
pub async fn waiter_gives_up_at_its_bound<P: LockProvider>(make: impl Make<P>) {
    let (waiter, holder) = make.executor_and_other().await;
    let config = config_named(&unique_name("waiter-bound"));
    let guard = acquire(&holder, &config).await;
    let started = std::time::Instant::now();
    let ran = waiter
        .execute_waiting(&config, Duration::from_millis(500), async {})
        .await
        .unwrap_or_else(|err| fail!("waiting failed: {err}"));
    assert!(ran.is_none(), "the lock was held: the waiter must not run");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "gave up before its bound"
    );
    unlock(guard).await;
}

/// Five waiters on one name, each holding briefly, all run, one at a time.
pub async fn waiters_run_one_at_a_time<P: LockProvider>(make: impl Make<P>) {
    let config = config_named(&unique_name("waiters"));
    let inside = Arc::new(AtomicU64::new(0));
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let executor = make.executor().await;
        let (config, inside) = (config.clone(), inside.clone());
        waiters.push(tokio::spawn(async move {
            executor
                .execute_waiting(&config, Duration::from_secs(30), async {
                    let others = inside.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    others
                })
                .await
        }));
    }
    for waiter in waiters {
        match waiter.await {
            Ok(Ok(Some(others))) => assert_eq!(others, 0, "two waiters ran at once"),
            other => fail!("every waiter should run: {other:?}"),
        }
    }
}

/// A waiter takes over an abandoned lease (a crashed holder) when it ends,
/// never before: the provider tells waiters when the holder's lease ends.
pub async fn waiter_takes_over_when_an_abandoned_lease_ends<P: LockProvider>(make: impl Make<P>) {
    let (waiter, crashed) = make.executor_and_other().await;
    let lease = Duration::from_millis(800);
    let config = config(&unique_name("abandoned"), lease, Duration::ZERO);
    let acquired_at = std::time::Instant::now();
    std::mem::forget(acquire(&crashed, &config).await); // never released
    let ran = waiter
        .execute_waiting(&config, Duration::from_secs(10), async {
            std::time::Instant::now()
        })
        .await
        .unwrap_or_else(|err| fail!("waiting failed: {err}"));
    let Some(started) = ran else {
        fail!("the waiter never got the abandoned lock");
    };
    let after_end = started.saturating_duration_since(acquired_at + lease);
    assert!(
        started >= acquired_at + lease,
        "the waiter got in before the lease ended"
    );
    // A figure, not a speed assertion: the bound only catches a waiter that
    // slept through the end (polling alone would take up to 500 ms).
    assert!(
        after_end < Duration::from_secs(2),
        "took over {after_end:?} after the lease end"
    );
    eprintln!("abandoned lease taken over {after_end:?} after its end");
}

/// Retrying gets the lock once the holder lets go within the retries.
pub async fn retries_get_the_lock_once_released<P: LockProvider>(make: impl Make<P>) {
    let (retrier, holder) = make.executor_and_other().await;
    let config = config_named(&unique_name("retry"));
    let guard = acquire(&holder, &config).await;
    let none = retrier
        .lock_retrying(&config, 2, Duration::from_millis(50))
        .await
        .unwrap_or_else(|err| fail!("retrying failed: {err}"));
    assert!(
        none.is_none(),
        "retries must give up while the lock is held"
    );
    let release = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        unlock(guard).await;
    };
    let (taken, ()) = tokio::join!(
        retrier.lock_retrying(&config, 20, Duration::from_millis(100)),
        release
    );
    match taken {
        Ok(Some(guard)) => unlock(guard).await,
        other => fail!("retries should get the released lock: {other:?}"),
    }
}

/// Keep-alive holds a 2 s lease through a 10 s job while another node tries
/// every 100 ms and never gets in; the lock is free after the job.
pub async fn keep_alive_holds_a_short_lease_through_a_long_job<P: LockProvider>(
    make: impl Make<P>,
) {
    let (runner, other) = make.executor_and_other().await;
    let config = config(
        &unique_name("keep-alive"),
        Duration::from_secs(2),
        Duration::ZERO,
    );
    let options = ExecutionOptions::new().keep_alive(true);
    let job = runner.execute_with(&config, options, async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        is_lease_lost()
    });
    // Tries until 9.5 s (by the clock, not by a count of attempts: slow
    // attempts must not carry the last ones past the job's end at 10 s).
    let stop_at = Instant::now() + Duration::from_millis(9_500);
    let intruder = async {
        let mut attempts = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(Some(guard)) = other.try_lock(&config).await {
                return (attempts, Some(guard));
            }
            attempts += 1;
            if Instant::now() >= stop_at {
                return (attempts, None);
            }
        }
    };
    let (ran, (attempts, intruded)) = tokio::join!(job, intruder);
    assert!(
        intruded.is_none(),
        "another node got in after {attempts} attempts"
    );
    assert_eq!(
        ran.ok(),
        Some(Some(false)),
        "the job must run with its lease intact"
    );
    unlock(acquire(&other, &config).await).await;
}

/// With `cancel_on_lease_loss`, a job that outlives its lease (no keep-alive)
/// is dropped and the call returns `LockError::LeaseLost`.
pub async fn job_outliving_its_lease_is_cancelled<P: LockProvider>(make: impl Make<P>) {
    let runner = make.executor().await;
    let config = config(
        &unique_name("cancel"),
        Duration::from_millis(500),
        Duration::ZERO,
    );
    let options = ExecutionOptions::new().cancel_on_lease_loss(true);
    let finished = Arc::new(AtomicU64::new(0));
    let result = runner
        .execute_with(&config, options, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.store(1, Ordering::SeqCst);
        })
        .await;
    assert_lease_lost(&result);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the job must have been dropped"
    );
}
