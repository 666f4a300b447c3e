//! SQL lock cycles next to their floor, per database: `try_lock` + `unlock`
//! against the same statements sent raw through sqlx (`sql_floor`), serial
//! (p50/p99) and with 64 tasks on distinct names sharing one provider; and a
//! job through the executor with run history on and off (what recording
//! each run in `<table>_runs` costs).
//!
//! `SQL_STORES=postgres,mysql,sqlite` picks the databases (all by default:
//! the test servers of `shedlock-sql`'s tests, `SHEDLOCK_TEST_POSTGRES_URL`,
//! `SHEDLOCK_TEST_MYSQL_URL`, and a WAL file under the target directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shedlock::provider::LockProvider;
use shedlock::sql::sqlx::mysql::MySqlQueryResult;
use shedlock::sql::sqlx::postgres::PgQueryResult;
use shedlock::sql::sqlx::sqlite::SqliteQueryResult;
use shedlock::sql::{
    MySqlLockProvider, PostgresLockProvider, SqlDatabase, SqlLockProvider, SqliteLockProvider,
};
use shedlock::{LockConfiguration, LockingTaskExecutor};
use shedlock_test_support::sql::{mysql_url, postgres_url, unique_table_name};

use crate::paths::for_next_tick;
use crate::report::{Row, median, percentile, us};
use crate::scale::{Scaled, Side, child, scale};
use crate::scenarios::{Cycles, throughput};
use crate::sql_floor::{Durations, FloorCycle, FloorShape, Param, SqlFloor, provider_cycle};
use crate::{BenchResult, LEASE};

/// Tasks sharing one provider (and its pool of 4 connections) in the throughput rounds.
const SQL_TASKS: usize = 64;

use Param::{Capacity, KeepFor, LockAtLeastFor, LockAtMostFor, LockedBy, Name};

/// The release's parameters, in the order of its one template on every database.
const RELEASE: &[Param] = &[LockAtLeastFor, KeepFor, Name, LockedBy];

/// PostgreSQL: `INSERT .. ON CONFLICT .. RETURNING`, and the release announcing itself.
const POSTGRES: FloorShape<shedlock::sql::sqlx::Postgres> = FloorShape {
    acquire: &[Name, LockAtMostFor, LockedBy, Capacity],
    release: RELEASE,
    durations: Durations::Millis,
    rows_affected: PgQueryResult::rows_affected,
};

/// MySQL/MariaDB: the `UPDATE` of an ended lease (the `INSERT IGNORE` only
/// runs for a name's first acquisition).
const MYSQL: FloorShape<shedlock::sql::sqlx::MySql> = FloorShape {
    acquire: &[LockAtMostFor, LockedBy, Name, Name, Capacity],
    release: RELEASE,
    durations: Durations::Micros,
    rows_affected: MySqlQueryResult::rows_affected,
};

const SQLITE: FloorShape<shedlock::sql::sqlx::Sqlite> = FloorShape {
    acquire: &[Name, LockAtMostFor, LockedBy, Capacity],
    release: RELEASE,
    durations: Durations::DateModifier,
    rows_affected: SqliteQueryResult::rows_affected,
};

/// One database: its provider and the floors it is measured against.
#[derive(Clone)]
struct SqlBench {
    label: &'static str,
    provider: Arc<dyn LockProvider>,
    floor: Arc<dyn FloorCycle>,
    /// Floors measured for a breakdown, with what they leave out.
    breakdowns: Vec<(&'static str, Arc<dyn FloorCycle>)>,
    /// A job's cycle through the executor, whose release records the run
    /// (`with_run_history(true)`), and the same without recording.
    executors: [(&'static str, SqlExecutor); 2],
    /// The lock table (for the scale runs' other processes).
    table: String,
}

type SqlExecutor = LockingTaskExecutor<Arc<dyn LockProvider>>;

/// The serial and concurrent figures of each database in `SQL_STORES`.
pub(crate) async fn sql_cycles(cycles: usize, rows: &mut Vec<Row>) -> BenchResult<()> {
    let stores = std::env::var("SQL_STORES").unwrap_or_else(|_| "postgres,mysql,sqlite".into());
    let table = unique_table_name("lock_cycle");
    for store in stores.split(',').map(str::trim) {
        let bench = match store {
            "postgres" => postgres(&table).await?,
            "mysql" => mysql(&table).await?,
            "sqlite" => sqlite(&table).await?,
            other => return Err(format!("SQL_STORES: unknown store {other:?}").into()),
        };
        serial(&bench, cycles, rows).await?;
        concurrent(&bench, rows).await?;
    }
    Ok(())
}

async fn postgres(table: &str) -> BenchResult<SqlBench> {
    let provider = PostgresLockProvider::connect(&postgres_url()).await?;
    postgres_on(prepared(provider.with_table_name(table)?).await?, FLOOR).await
}

/// The PostgreSQL bench of `provider`, its floor's statements captured
/// from cycles of `floor_name`.
async fn postgres_on(provider: PostgresLockProvider, floor_name: &str) -> BenchResult<SqlBench> {
    let pool = provider.pool().clone();
    let floors = SqlFloor::plain_and_bounded(&provider, &pool, floor_name, &POSTGRES).await?;
    // What announcing the release costs: the release as a plain UPDATE.
    let without_notify = SqlFloor::of(
        &provider,
        &pool,
        floor_name,
        &POSTGRES,
        Some(release_without_notify),
    )
    .await?;
    let breakdowns: Vec<(_, Arc<dyn FloorCycle>)> =
        vec![("floor, release without pg_notify", Arc::new(without_notify))];
    Ok(SqlBench::new("PostgreSQL", provider, floors, breakdowns))
}

/// The floor with its waits bounded by timeouts as the provider's are (the
/// pool's connection, each statement, the acquisition): what they cost.
const BOUNDED: &str = "floor, each wait bounded as the provider's";

/// The release's `UPDATE` alone, out of `WITH released AS (UPDATE ..
/// RETURNING name) SELECT pg_notify(..) FROM released`.
fn release_without_notify(release: &str) -> Option<String> {
    let update = release.strip_prefix("WITH released AS (")?;
    let (update, _) = update.rsplit_once(" RETURNING name)")?;
    Some(update.to_owned())
}

async fn mysql(table: &str) -> BenchResult<SqlBench> {
    let provider = MySqlLockProvider::connect(&mysql_url()).await?;
    let provider = prepared(provider.with_table_name(table)?).await?;
    let floors = SqlFloor::plain_and_bounded(&provider, provider.pool(), FLOOR, &MYSQL).await?;
    Ok(SqlBench::new("MariaDB", provider, floors, Vec::new()))
}

async fn sqlite(table: &str) -> BenchResult<SqlBench> {
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{table}.db"));
    let provider = prepared(SqliteLockProvider::open(&file).await?).await?;
    let floors = SqlFloor::plain_and_bounded(&provider, provider.pool(), FLOOR, &SQLITE).await?;
    Ok(SqlBench::new(
        "SQLite (WAL file)",
        provider,
        floors,
        Vec::new(),
    ))
}

/// The name the serial floors cycle.
const FLOOR: &str = "sql-floor";

/// `provider` with its tables created and every name the floor uses given
/// its row through the provider first, so the floor's statements find it as
/// in the steady state (on MySQL, the acquisition's `UPDATE`).
async fn prepared<D: SqlDatabase>(provider: SqlLockProvider<D>) -> BenchResult<SqlLockProvider<D>> {
    provider.create_table_if_missing().await?;
    let names = [FLOOR.to_owned(), "sql-serial".to_owned()]
        .into_iter()
        .chain((0..SQL_TASKS).flat_map(|task| [floor_name(task), task_name(task)]));
    for name in names {
        provider_cycle(
            &provider,
            &LockConfiguration::new(name, LEASE, Duration::ZERO)?,
        )
        .await?;
    }
    Ok(provider)
}

fn floor_name(task: usize) -> String {
    format!("sql-floor-{task}")
}

fn task_name(task: usize) -> String {
    format!("sql-task-{task}")
}

/// What a path cycles: the provider, the floor, a breakdown floor, or a
/// job through an executor.
#[derive(Clone, Copy)]
enum SqlPath {
    Provider,
    /// A shared holder's cycle (one permit, no capacity), on a name of its own.
    Shared,
    /// A cycle claiming a tick of its own (`for_tick`: one transaction).
    Tick,
    Floor,
    Breakdown(usize),
    Execute(usize),
}

impl SqlBench {
    /// `provider` against `floors` (the floor, then the same floor bounded),
    /// with `breakdowns` before the bounded one.
    fn new<D: SqlDatabase>(
        label: &'static str,
        provider: SqlLockProvider<D>,
        [floor, bounded]: [Arc<dyn FloorCycle>; 2],
        mut breakdowns: Vec<(&'static str, Arc<dyn FloorCycle>)>,
    ) -> Self {
        breakdowns.push((BOUNDED, bounded));
        // A job's executor path, run history on, then off.
        let with = |record: bool| -> SqlExecutor {
            LockingTaskExecutor::new(Arc::new(provider.clone().with_run_history(record)))
        };
        SqlBench {
            label,
            table: provider.table_name(),
            floor,
            breakdowns,
            executors: [
                ("execute, run history on", with(true)),
                ("execute, run history off", with(false)),
            ],
            provider: Arc::new(provider),
        }
    }

    fn paths(&self) -> Vec<SqlPath> {
        [SqlPath::Floor, SqlPath::Provider]
            .into_iter()
            .chain((0..self.breakdowns.len()).map(SqlPath::Breakdown))
            .chain((0..self.executors.len()).map(SqlPath::Execute))
            .collect()
    }

    fn label(&self, path: SqlPath) -> &'static str {
        match path {
            SqlPath::Provider => "try_lock + unlock",
            SqlPath::Shared => "try_lock + unlock, shared (1 transaction each)",
            SqlPath::Tick => "try_lock claiming a tick + unlock (1 transaction)",
            SqlPath::Floor => "floor: the same statements, raw sqlx",
            SqlPath::Breakdown(i) => self.breakdowns[i].0,
            SqlPath::Execute(i) => self.executors[i].0,
        }
    }

    async fn cycle(
        &self,
        path: SqlPath,
        config: &LockConfiguration,
        floor_name: &str,
    ) -> BenchResult<()> {
        match path {
            SqlPath::Provider => provider_cycle(&*self.provider, config).await,
            SqlPath::Shared => {
                // Made here (well under a microsecond): the path keeps no state.
                let shared = LockConfiguration::new("sql-shared", LEASE, Duration::ZERO)?.shared();
                provider_cycle(&*self.provider, &shared).await
            }
            SqlPath::Tick => provider_cycle(&*self.provider, &for_next_tick(config)).await,
            SqlPath::Floor => self.floor.cycle(floor_name).await,
            SqlPath::Breakdown(i) => self.breakdowns[i].1.cycle(floor_name).await,
            SqlPath::Execute(i) => match self.executors[i].1.execute(config, async { 1 }).await? {
                Some(_) => Ok(()),
                None => Err(format!("{} unexpectedly held", config.name()).into()),
            },
        }
    }
}

/// Serial cycles in two passes, each against the floor: the provider and
/// the breakdown floors, then the executor paths (whose run history, when
/// on, writes more and would slow whatever follows it within a pass).
async fn serial(bench: &SqlBench, cycles: usize, rows: &mut Vec<Row>) -> BenchResult<()> {
    let lock_paths: Vec<SqlPath> = [SqlPath::Floor, SqlPath::Provider]
        .into_iter()
        .chain((0..bench.breakdowns.len()).map(SqlPath::Breakdown))
        .chain([SqlPath::Shared, SqlPath::Tick])
        .collect();
    let samples = serial_pass(bench, &lock_paths, cycles).await?;
    let p = |i: usize, q| percentile(&samples[i], q);
    // lock_paths[0] is the floor, [1] the provider, the rest breakdowns and
    // the shared cycle.
    let ratio = us(p(1, 0.5)) / us(p(0, 0.5));
    rows.push(Row {
        figure: format!("{}: serial p50, try_lock + unlock", bench.label),
        ours: format!("{:.1} µs", us(p(1, 0.5))),
        floor: format!("{:.1} µs", us(p(0, 0.5))),
        ratio: Some(ratio),
        target: "<= 1.10x",
        met: Some(ratio <= 1.10),
    });
    rows.push(Row {
        figure: format!("{}: serial p99, try_lock + unlock", bench.label),
        ours: format!("{:.1} µs", us(p(1, 0.99))),
        floor: format!("{:.1} µs", us(p(0, 0.99))),
        ratio: Some(us(p(1, 0.99)) / us(p(0, 0.99))),
        target: "-",
        met: None,
    });
    breakdown_rows(bench, &lock_paths, &samples, rows);
    let executor_paths: Vec<SqlPath> = [SqlPath::Floor]
        .into_iter()
        .chain((0..bench.executors.len()).map(SqlPath::Execute))
        .collect();
    let samples = serial_pass(bench, &executor_paths, cycles).await?;
    breakdown_rows(bench, &executor_paths, &samples, rows);
    Ok(())
}

/// A row per path after the first (the floor), its serial p50 against the floor's.
fn breakdown_rows(
    bench: &SqlBench,
    paths: &[SqlPath],
    samples: &[Vec<Duration>],
    rows: &mut Vec<Row>,
) {
    let p50 = |i: usize| us(percentile(&samples[i], 0.5));
    for (i, &path) in paths.iter().enumerate().skip(1) {
        if matches!(path, SqlPath::Provider) {
            continue;
        }
        rows.push(Row {
            figure: format!("{}: serial p50, {}", bench.label, bench.label(path)),
            ours: format!("{:.1} µs", p50(i)),
            floor: format!("{:.1} µs", p50(0)),
            ratio: Some(p50(i) / p50(0)),
            target: "(breakdown)",
            met: None,
        });
    }
}

/// `cycles` serial cycles of each of `paths`, in turns of blocks of 20 so
/// drift hits all alike; each path's latencies, sorted.
async fn serial_pass(
    bench: &SqlBench,
    paths: &[SqlPath],
    cycles: usize,
) -> BenchResult<Vec<Vec<Duration>>> {
    const BLOCK: usize = 20;
    let config = LockConfiguration::new("sql-serial", LEASE, Duration::ZERO)?;
    for &path in paths {
        for _ in 0..(cycles / 20).clamp(20, 500) {
            bench.cycle(path, &config, FLOOR).await?;
        }
    }
    let mut samples = vec![Vec::new(); paths.len()];
    let blocks = cycles.div_ceil(BLOCK);
    for block in 0..blocks {
        for i in 0..paths.len() {
            let index = (i + block) % paths.len();
            for _ in 0..BLOCK {
                let start = Instant::now();
                bench.cycle(paths[index], &config, FLOOR).await?;
                samples[index].push(start.elapsed());
            }
        }
    }
    println!(
        "{}: serial cycle, uncontended ({} cycles per path)",
        bench.label,
        blocks * BLOCK
    );
    for (latencies, &path) in samples.iter_mut().zip(paths) {
        latencies.sort();
        println!(
            "  {:<46} p50 {:>8.1} µs   p99 {:>8.1} µs",
            bench.label(path),
            us(percentile(latencies, 0.5)),
            us(percentile(latencies, 0.99)),
        );
    }
    Ok(samples)
}

impl Cycles for Arc<SqlBench> {
    type Path = SqlPath;

    fn cycle(
        &self,
        path: SqlPath,
        config: &LockConfiguration,
        floor_name: &str,
    ) -> impl Future<Output = BenchResult<()>> + Send {
        SqlBench::cycle(self, path, config, floor_name)
    }
}

/// The table a scale run's other processes use.
const SCALE_TABLE_ENV: &str = "LOCK_CYCLE_SCALE_TABLE";

impl Scaled for Arc<SqlBench> {
    const STORE: &'static str = "postgres";

    fn path(&self, side: Side) -> Option<SqlPath> {
        match side {
            Side::Floor => Some(SqlPath::Floor),
            Side::Bound => None,
            Side::Provider => Some(SqlPath::Provider),
        }
    }

    fn names(task: usize) -> (String, String) {
        task_names(task)
    }

    fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![(SCALE_TABLE_ENV, self.table.clone())]
    }
}

/// PostgreSQL at 1, 16 and 64 tasks, in one process and in four.
pub(crate) async fn sql_scale(rows: &mut Vec<Row>) -> BenchResult<()> {
    let bench = Arc::new(postgres(&unique_table_name("lock_scale")).await?);
    scale(&bench, &[1, 16, SQL_TASKS], &[1, 4], rows).await
}

/// A scale run's other process, on the table the first one made (and
/// prepared); its floor's statements captured on a name of its own, so the
/// processes starting together do not contend for one.
pub(crate) async fn scale_child(spec: &str) -> BenchResult<()> {
    let table = std::env::var(SCALE_TABLE_ENV)?;
    let provider = PostgresLockProvider::connect(&postgres_url()).await?;
    let floor_name = format!("{FLOOR}-{}", std::process::id());
    let bench = Arc::new(postgres_on(provider.with_table_name(&table)?, &floor_name).await?);
    child(spec, &bench).await
}

/// Task `task`'s names in the throughput rounds: its lock's and its floor's.
fn task_names(task: usize) -> (String, String) {
    (task_name(task), floor_name(task))
}

/// Short rounds, every path in every round; the median of the rounds'
/// ratios to the floor's.
async fn concurrent(bench: &SqlBench, rows: &mut Vec<Row>) -> BenchResult<()> {
    const ROUNDS: usize = 7;
    const PER_TASK: usize = 20;
    let shared = Arc::new(bench.clone());
    let paths = bench.paths();
    for &path in &paths {
        throughput(&shared, path, (SQL_TASKS, 5), task_names).await?;
    }
    let mut rates = vec![Vec::new(); paths.len()];
    for _ in 0..ROUNDS {
        for (i, &path) in paths.iter().enumerate() {
            rates[i].push(throughput(&shared, path, (SQL_TASKS, PER_TASK), task_names).await?);
        }
    }
    println!(
        "{}: {SQL_TASKS} tasks on distinct names, one pool of 4 ({} cycles per round, median of {ROUNDS} rounds)",
        bench.label,
        SQL_TASKS * PER_TASK
    );
    let floor = median(&mut rates[0].clone());
    // paths[0] is the floor, paths[1] the provider, the rest breakdowns.
    for (i, &path) in paths.iter().enumerate() {
        let rate = median(&mut rates[i].clone());
        println!("  {:<46} {rate:>8.0} cycles/s", bench.label(path));
        if i == 0 {
            continue;
        }
        let mut ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(r, f)| r / f).collect();
        rows.push(Row {
            figure: format!("{}: {SQL_TASKS} tasks, {}", bench.label, bench.label(path)),
            ours: format!("{rate:.0}/s"),
            floor: format!("{floor:.0}/s"),
            ratio: Some(median(&mut ratios)),
            target: if i == 1 { "-" } else { "(breakdown)" },
            met: None,
        });
    }
    Ok(())
}
