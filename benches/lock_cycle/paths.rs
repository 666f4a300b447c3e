//! The ways one lock cycle is run: the floor and its breakdowns, and shedlock's entry points.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use shedlock::redis::RedisLockProvider;
use shedlock::{LockConfiguration, LockProvider, LockingTaskExecutor};

use shedlock_test_support::redis::REDIS_URL_ENV;

use crate::floor::Floor;
use crate::scale::{Scaled, Side};
use crate::scenarios::Cycles;
use crate::{BenchResult, serial_job};

pub(crate) fn unexpected<T: std::fmt::Debug>(
    what: &str,
    got: T,
) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{what}: unexpected outcome {got:?}").into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Floor,
    FloorWithChecks,
    FloorOneScript,
    Bound,
    TryLock,
    TryLockWithToken,
    TryLockForTick,
    Executor,
    ExecutorWithHistory,
    Attribute,
}

impl Path {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Path::Floor => "floor: SET NX PX + compare-and-delete",
            Path::FloorWithChecks => "floor + EXISTS settings holders",
            Path::FloorOneScript => "floor, acquiring by one script (SET + EXISTS)",
            Path::Bound => "raw client sending shedlock's commands (bound)",
            Path::TryLock => "LockProvider::try_lock + LockGuard::unlock",
            Path::TryLockWithToken => "try_lock + fencing_token + unlock (3 trips)",
            Path::TryLockForTick => "try_lock claiming a tick (for_tick) + unlock",
            Path::Executor => "LockingTaskExecutor::execute",
            Path::ExecutorWithHistory => "execute, run history on",
            Path::Attribute => "#[scheduler_lock(provider = ..)] fn",
        }
    }
}

/// Everything one scenario needs, shared by every task.
#[derive(Clone)]
pub(crate) struct Bench {
    pub(crate) provider: RedisLockProvider,
    pub(crate) executor: LockingTaskExecutor<RedisLockProvider>,
    /// The same provider with `with_run_history(true)`: what recording costs.
    pub(crate) executor_with_history: LockingTaskExecutor<RedisLockProvider>,
    pub(crate) floor: Floor,
    /// The server's URL (for the scale runs' other processes).
    pub(crate) url: String,
}

impl Scaled for Bench {
    const STORE: &'static str = "redis";

    fn path(&self, side: Side) -> Option<Path> {
        Some(match side {
            Side::Floor => Path::Floor,
            Side::Bound => Path::Bound,
            Side::Provider => Path::TryLock,
        })
    }

    fn names(task: usize) -> (String, String) {
        (format!("scale-{task}"), format!("floor:scale-{task}"))
    }

    fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![(REDIS_URL_ENV, self.url.clone())]
    }
}

impl Cycles for Bench {
    type Path = Path;

    async fn cycle(
        &self,
        path: Path,
        config: &LockConfiguration,
        floor_key: &str,
    ) -> BenchResult<()> {
        match path {
            Path::Floor => self.floor.cycle(floor_key).await,
            Path::FloorWithChecks => self.floor.checked_cycle(floor_key).await,
            Path::FloorOneScript => self.floor.one_script_cycle(floor_key).await,
            // A key of its own: the floor's key under shedlock's prefix.
            Path::Bound => {
                let lock = self.provider.lock_key(floor_key);
                self.floor.bound_cycle(&lock).await
            }
            Path::TryLock => match self.provider.try_lock(config).await? {
                Some(guard) => Ok(guard.unlock().await?),
                None => Err(unexpected("try_lock", None::<()>)),
            },
            Path::TryLockWithToken => match self.provider.try_lock(config).await? {
                Some(guard) => {
                    black_box(guard.fencing_token().await?);
                    Ok(guard.unlock().await?)
                }
                None => Err(unexpected("try_lock", None::<()>)),
            },
            Path::TryLockForTick => {
                let guard = self.provider.try_lock(&for_next_tick(config)).await?;
                match guard {
                    Some(guard) => Ok(guard.unlock().await?),
                    None => Err(unexpected("try_lock for a tick", None::<()>)),
                }
            }
            Path::Executor => executed(&self.executor, config).await,
            Path::ExecutorWithHistory => executed(&self.executor_with_history, config).await,
            Path::Attribute => match serial_job(&self.provider).await? {
                Some(_) => Ok(()),
                None => Err(unexpected("attribute", None::<()>)),
            },
        }
    }
}

/// `config` claiming a tick later than every one claimed before in this
/// process: each cycle of a tick path claims a tick of its own.
pub(crate) fn for_next_tick(config: &LockConfiguration) -> LockConfiguration {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let tick = NEXT.fetch_add(1, Ordering::Relaxed);
    config
        .clone()
        .for_tick(SystemTime::UNIX_EPOCH + Duration::from_millis(tick))
}

/// One job of `config` through `executor`, which must run it.
async fn executed(
    executor: &LockingTaskExecutor<RedisLockProvider>,
    config: &LockConfiguration,
) -> BenchResult<()> {
    match executor.execute(config, async { black_box(1) }).await? {
        Some(_) => Ok(()),
        None => Err(unexpected("execute", None::<()>)),
    }
}
