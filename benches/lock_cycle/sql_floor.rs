//! The floor of an SQL lock cycle: the statements the provider sends for one
//! cycle, taken from sqlx's own statement log while the provider runs one,
//! sent raw through sqlx on a pool with the provider's pool settings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shedlock::provider::BoxFuture;
use shedlock::sql::sqlx::{self, Database, Encode, Executor, IntoArguments, Pool, Row, Type};
use shedlock::{LockConfiguration, LockProvider};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::{BenchResult, LEASE};

/// A parameter of a lock statement, as the provider's dialects name them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Param {
    Name,
    LockedBy,
    LockAtMostFor,
    LockAtLeastFor,
    KeepFor,
    /// The capacity an acquisition assumes when none is stored: 1.
    Capacity,
}

/// How a database takes durations (the provider's `DurationEncoding`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Durations {
    Millis,
    Micros,
    /// SQLite's date modifier, `+30.000 seconds`.
    DateModifier,
}

/// What one database's floor needs besides the statements' text: the
/// parameters of its steady-state acquisition and of its release, in the
/// order of their placeholders (kept equal to `shedlock-sql/src/<db>.rs` by
/// hand; a difference fails the floor's first cycle).
pub(crate) struct FloorShape<DB: Database> {
    pub(crate) acquire: &'static [Param],
    pub(crate) release: &'static [Param],
    pub(crate) durations: Durations,
    /// Rows an `execute` changed (the provider's `Dialect::counts`).
    pub(crate) rows_affected: fn(&DB::QueryResult) -> u64,
}

/// One statement of the floor.
struct FloorStatement {
    sql: String,
    params: &'static [Param],
    /// `RETURNING` a token (read, as the provider reads it), else counted.
    returns_row: bool,
}

/// A floor cycle on some database, behind one object-safe face.
pub(crate) trait FloorCycle: Send + Sync {
    /// Takes and releases `name` with the raw statements.
    fn cycle<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BenchResult<()>>;
}

/// The raw client: the provider's statements, nothing else.
pub(crate) struct SqlFloor<DB: Database> {
    pool: Pool<DB>,
    acquire: FloorStatement,
    release: FloorStatement,
    durations: Durations,
    rows_affected: fn(&DB::QueryResult) -> u64,
    /// Bounds each wait as the provider does (a breakdown): for a pooled
    /// connection, for each statement, and for the acquisition as a whole.
    timeouts: bool,
    /// [`SqlFloor::run_cycle`], chosen where sqlx's bounds on `DB` are
    /// known, so the [`FloorCycle`] impl need not repeat them.
    run: for<'a> fn(&'a Self, &'a str) -> BoxFuture<'a, BenchResult<()>>,
}

/// The provider's default statement timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `future`, bounded by [`TIMEOUT`] as the provider bounds its waits.
async fn bounded<T, E>(future: impl Future<Output = Result<T, E>>) -> BenchResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    Ok(tokio::time::timeout(TIMEOUT, future).await??)
}

static LOCKED_BY: AtomicU64 = AtomicU64::new(0);

impl<DB> SqlFloor<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + sqlx::Decode<'q, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    /// The floor of `provider`'s cycle on `name`: the statements it sent for
    /// one cycle (after a warm-up, so no first-use lookups), on a new pool
    /// with the settings of `provider_pool`. `release_rewrite` changes the
    /// release's text (a breakdown), `None` keeps it.
    pub(crate) async fn of<P: LockProvider>(
        provider: &P,
        provider_pool: &Pool<DB>,
        name: &str,
        shape: &FloorShape<DB>,
        release_rewrite: Option<fn(&str) -> Option<String>>,
    ) -> BenchResult<Self> {
        let config = LockConfiguration::new(name, LEASE, Duration::ZERO)?;
        provider_cycle(provider, &config).await?;
        let mut sent = capture_statements(provider_cycle(provider, &config)).await?;
        if sent.len() != 2 {
            return Err(format!(
                "one steady-state cycle sent {} statements, not an acquisition and a release: {sent:#?}",
                sent.len()
            )
            .into());
        }
        let mut release = sent.pop().unwrap_or_default();
        let acquire = sent.pop().unwrap_or_default();
        if let Some(rewrite) = release_rewrite {
            release =
                rewrite(&release).ok_or("the release statement is not of the expected shape")?;
        }
        let pool = provider_pool
            .options()
            .clone()
            .connect_with((*provider_pool.connect_options()).clone())
            .await?;
        Ok(SqlFloor {
            pool,
            acquire: FloorStatement {
                returns_row: acquire.contains("RETURNING"),
                sql: acquire,
                params: shape.acquire,
            },
            release: FloorStatement {
                returns_row: false,
                sql: release,
                params: shape.release,
            },
            durations: shape.durations,
            rows_affected: shape.rows_affected,
            timeouts: false,
            run: Self::run_cycle,
        })
    }

    /// The floor of `provider`'s cycle on `name` (as [`of`](Self::of), the
    /// release as sent), then the same floor bounding its waits.
    pub(crate) async fn plain_and_bounded<P: LockProvider>(
        provider: &P,
        provider_pool: &Pool<DB>,
        name: &str,
        shape: &FloorShape<DB>,
    ) -> BenchResult<[Arc<dyn FloorCycle>; 2]> {
        let plain = Self::of(provider, provider_pool, name, shape, None).await?;
        let bounded = Self::of(provider, provider_pool, name, shape, None).await?;
        Ok([Arc::new(plain), Arc::new(bounded.with_timeouts())])
    }

    /// The same floor, bounding its waits as the provider does.
    pub(crate) fn with_timeouts(self) -> Self {
        SqlFloor {
            timeouts: true,
            ..self
        }
    }

    /// Takes and releases `name` with the raw statements.
    fn run_cycle<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BenchResult<()>> {
        Box::pin(async move {
            // As long as the provider's `{host pid};id={unique id}`.
            let n = LOCKED_BY.fetch_add(1, Ordering::Relaxed);
            let locked_by = format!("floor-{};id={n:032x}", std::process::id());
            if !self.acquire(name, &locked_by).await? {
                return Err(format!("floor: {name} was not taken").into());
            }
            if self.release(name, &locked_by).await? != 1 {
                return Err(format!("floor: {name} was not released").into());
            }
            Ok(())
        })
    }

    /// Takes `name` for `locked_by`; whether it was taken.
    async fn acquire(&self, name: &str, locked_by: &str) -> BenchResult<bool> {
        let acquire = self.bound(&self.acquire, name, locked_by);
        if !self.timeouts {
            return Ok(if self.acquire.returns_row {
                let row = acquire.fetch_optional(&self.pool).await?;
                row.map(|row| row.try_get::<i64, _>(0))
                    .transpose()?
                    .is_some()
            } else {
                (self.rows_affected)(&acquire.execute(&self.pool).await?) == 1
            });
        }
        let mut connection = bounded(self.pool.acquire()).await?;
        let taken = async {
            Ok::<_, sqlx::Error>(if self.acquire.returns_row {
                let row = bounded(acquire.fetch_optional(&mut *connection))
                    .await
                    .map_err(|err| sqlx::Error::Protocol(err.to_string()))?;
                row.map(|row| row.try_get::<i64, _>(0))
                    .transpose()?
                    .is_some()
            } else {
                let done = bounded(acquire.execute(&mut *connection))
                    .await
                    .map_err(|err| sqlx::Error::Protocol(err.to_string()))?;
                (self.rows_affected)(&done) == 1
            })
        };
        bounded(taken).await
    }

    /// Releases `name` of `locked_by`; rows changed.
    async fn release(&self, name: &str, locked_by: &str) -> BenchResult<u64> {
        let release = self.bound(&self.release, name, locked_by);
        if !self.timeouts {
            return Ok((self.rows_affected)(&release.execute(&self.pool).await?));
        }
        let mut connection = bounded(self.pool.acquire()).await?;
        Ok((self.rows_affected)(
            &bounded(release.execute(&mut *connection)).await?,
        ))
    }

    /// `statement` with its parameters bound from one map.
    fn bound<'q>(
        &self,
        statement: &'q FloorStatement,
        name: &'q str,
        locked_by: &'q str,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
        statement
            .params
            .iter()
            .fold(sqlx::query(&statement.sql), |query, param| match param {
                Param::Name => query.bind(name),
                Param::LockedBy => query.bind(locked_by),
                Param::Capacity => query.bind(1_i64),
                Param::LockAtMostFor => self.duration(query, LEASE),
                Param::LockAtLeastFor | Param::KeepFor => self.duration(query, Duration::ZERO),
            })
    }

    fn duration<'q>(
        &self,
        query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        duration: Duration,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
        let ms = duration.as_millis() as i64;
        match self.durations {
            Durations::Millis => query.bind(ms),
            Durations::Micros => query.bind(ms * 1000),
            Durations::DateModifier => {
                query.bind(format!("+{}.{:03} seconds", ms / 1000, ms % 1000))
            }
        }
    }
}

impl<DB: Database> FloorCycle for SqlFloor<DB> {
    fn cycle<'a>(&'a self, name: &'a str) -> BoxFuture<'a, BenchResult<()>> {
        (self.run)(self, name)
    }
}

/// One `try_lock` + `unlock` of `config`.
pub(crate) async fn provider_cycle<P: LockProvider + ?Sized>(
    provider: &P,
    config: &LockConfiguration,
) -> BenchResult<()> {
    match provider.try_lock(config).await? {
        Some(guard) => Ok(guard.unlock().await?),
        None => Err(format!("{} unexpectedly held", config.name()).into()),
    }
}

/// The statements sqlx logged (target `sqlx::query`) while `run` ran.
async fn capture_statements(
    run: impl Future<Output = BenchResult<()>>,
) -> BenchResult<Vec<String>> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut installed = Ok(());
    INSTALLED.call_once(|| {
        installed = tracing::dispatcher::set_global_default(tracing::Dispatch::new(StatementLog));
    });
    installed.map_err(|err| format!("cannot read sqlx's statement log: {err}"))?;
    lock_statements().clear();
    CAPTURING.store(true, Ordering::SeqCst);
    tracing::callsite::rebuild_interest_cache();
    let ran = run.await;
    CAPTURING.store(false, Ordering::SeqCst);
    // Off again everywhere: the measurements run with no subscriber work.
    tracing::callsite::rebuild_interest_cache();
    ran?;
    Ok(std::mem::take(&mut *lock_statements()))
}

static CAPTURING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock_statements() -> std::sync::MutexGuard<'static, Vec<String>> {
    STATEMENTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the text of each statement sqlx logs, while [`CAPTURING`].
struct StatementLog;

impl StatementLog {
    fn wants(metadata: &Metadata<'_>) -> bool {
        CAPTURING.load(Ordering::SeqCst) && metadata.target() == "sqlx::query"
    }
}

impl Subscriber for StatementLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(if CAPTURING.load(Ordering::SeqCst) {
            LevelFilter::TRACE
        } else {
            LevelFilter::OFF
        })
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::wants(metadata)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        struct Statement(Option<String>, Option<String>);
        impl Visit for Statement {
            fn record_str(&mut self, field: &Field, value: &str) {
                match field.name() {
                    "db.statement" => self.0 = Some(value.trim().to_owned()),
                    "summary" => self.1 = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut statement = Statement(None, None);
        event.record(&mut statement);
        // A short statement is logged whole as its summary, with no text.
        if let Some(sql) = statement.0.filter(|sql| !sql.is_empty()).or(statement.1) {
            lock_statements().push(sql);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
