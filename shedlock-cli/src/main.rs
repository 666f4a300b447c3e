//! `shedlock`: the operator's command for shedlock locks, on every store.
//!
//! ```text
//! shedlock list                      every lock: kind, holders, time left, term, last renewal, capacity, paused, last run
//! shedlock show NAME                 one lock in detail, with its last run
//! shedlock history NAME              its last 20 runs: times, outcome, holder, token
//! shedlock pause NAME                capacity 0: nobody acquires it (holders finish)
//! shedlock resume NAME               the capacity from before the pause
//! shedlock capacity NAME N           store the capacity (0 pauses)
//! shedlock unlock NAME --force       end every lease of the lock now
//! shedlock prune --unused-for 30d    delete the SQL rows of locks unused since then
//! ```
//!
//! The store comes from `--store URL` or `SHEDLOCK_STORE_URL` (`redis://`,
//! `rediss://`, `postgres://`, `mysql://`, `sqlite://`), or from `--redis
//! URL` or `SHEDLOCK_REDIS_URL` as before; `--json` prints machine-readable
//! output, the same on every store; `--timeout 30s` gives each SQL
//! statement more time (default 5 s). Exit codes: 0 done, 1 the store failed
//! or could not be reached, 2 a usage mistake (including `unlock` without
//! `--force`, and a lock name the library refuses). Passwords in the URL are
//! never printed.

mod output;
mod store;

use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use shedlock_core::{LockAdmin, LockError, RunOutcome, RunRecord};

use crate::output::{Format, Recent, print_list, print_pruned, print_state};
use crate::store::{Place, Store, StoreKind};

/// Exit code: the store failed or could not be reached.
const EXIT_STORE: u8 = 1;
/// Exit code: a usage mistake (clap's own errors use it too).
const EXIT_USAGE: u8 = 2;

/// The store used when none is given.
const DEFAULT_STORE: &str = "redis://127.0.0.1:6379";

/// Inspect and operate shedlock locks in Redis, PostgreSQL, MySQL/MariaDB or
/// SQLite: list and show them, pause and resume them, change their capacity,
/// force-release them, prune the rows of unused ones.
#[derive(Parser, Debug)]
#[command(name = "shedlock", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 done; 1 the store failed or could not be reached; \
                         2 a usage mistake (including unlock without --force, and a lock name \
                         the library refuses)."
)]
struct Cli {
    /// Where the locks are: redis://[user:password@]host:port[/db], rediss://..,
    /// postgres://[user[:password]@]host[:port]/database, mysql://..,
    /// sqlite://path/to/file.db [default: redis://127.0.0.1:6379]. The
    /// password is never printed.
    #[arg(
        long,
        env = "SHEDLOCK_STORE_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    store: Option<String>,

    /// A Redis URL: what --store takes, kept for scripts written before it.
    /// --store (or SHEDLOCK_STORE_URL) wins over SHEDLOCK_REDIS_URL; given
    /// on the command line, --redis wins over SHEDLOCK_STORE_URL.
    #[arg(
        long,
        env = "SHEDLOCK_REDIS_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    redis: Option<String>,

    /// Redis: first part of every lock key, as the services' providers use it.
    #[arg(long, default_value = "job-lock", global = true)]
    prefix: String,

    /// Redis: second part of every lock key (e.g. staging, production).
    #[arg(long, default_value = "default", global = true)]
    environment: String,

    /// SQL stores: the lock table (`table` or `schema.table`), as the
    /// services' providers use it; capacities and pauses are in
    /// `<table>_settings`.
    #[arg(long, default_value = "shedlock", global = true)]
    table: String,

    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,

    /// SQL stores: how long each statement may take, and waiting for a
    /// connection: 30s, 500ms (humantime) [default: 5s].
    ///
    /// The providers' `with_statement_timeout`. A statement that runs out
    /// of it is cancelled by PostgreSQL and MariaDB themselves, so nothing
    /// the command gave up on runs on there, holding rows. MySQL 8 cannot
    /// be told to: there a prune deletes at most 10,000 rows a statement,
    /// so one the command gave up on ends soon after (or waits for a row
    /// up to `innodb_lock_wait_timeout`). Give a big `prune` more time if
    /// it runs out.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every lock that is held or has a stored capacity (including keys written
    /// by ShedLock for Java under the same prefix).
    ///
    /// KIND: `scope` for a scope's owner (a lock named `scope:<scope>`),
    /// `lease` for an exclusive holder that has renewed its lease at least
    /// once (a leader, a keep-alive job), `job` otherwise. TERM: the holder's
    /// fencing token (a leader's term). RENEWED: how long ago, by the store's
    /// clock, the holder last renewed its lease (`never`: no renewal; `-`:
    /// unknown; Redis records an exclusive holder's term and renewals from its
    /// first renewal on). Holder columns describe the holder whose lease ends
    /// last. `unlock NAME --force` on a leader makes it step down at its next
    /// renewal.
    List,
    /// One lock: its holders (who, since when, time left, permits, kind, term,
    /// last renewal), capacity, pause and waiting exclusive jobs.
    Show {
        /// The lock's name, as in #[scheduler_lock(name = "...")].
        name: String,
    },
    /// Pause a lock (capacity 0): running holders finish, nobody else
    /// acquires it until `resume`.
    Pause {
        /// The lock's name.
        name: String,
    },
    /// End a pause: the capacity goes back to what it was; waiting jobs start.
    Resume {
        /// The lock's name.
        name: String,
    },
    /// Store the lock's capacity (the permits all holders may take together;
    /// 0 pauses it). A stored capacity wins over the services' defaults.
    Capacity {
        /// The lock's name.
        name: String,
        /// The new capacity.
        capacity: u32,
    },
    /// The lock's last runs (up to 20), the newest first: when each started
    /// and finished, how long it ran, its outcome (ok, error, panic,
    /// lease_lost), who ran it and its fencing token. Recorded by the
    /// release after each run when the services' providers opt in with
    /// `with_run_history(true)`, on Redis and on the SQL stores alike.
    History {
        /// The lock's name.
        name: String,
    },
    /// Delete what is kept of locks nobody used for a while (ShedLock issue
    /// 713: per-resource lock names leave a row each). SQL stores: the rows
    /// of locks whose last lease ended more than --unused-for ago, by the
    /// database's clock; never a held lock's; stored capacities and pauses
    /// stay (a paused lock is unused by design); a pruned lock taken again
    /// gets a new row, with fencing tokens still rising; each statement has
    /// --timeout (give a big table more). Redis: nothing to
    /// delete, as lock keys end with their lease and fencing counters expire
    /// a week after their last use; stored capacities and pauses stay.
    Prune {
        /// How long a lock has not been used, at least: 30d, 12h, 90m
        /// (humantime); on SQL stores at most 1000y.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        unused_for: Duration,
    },
    /// End every lease of a lock now. The holders' jobs are not stopped and
    /// keep running; fencing tokens let a downstream store refuse them. A
    /// leader (or a scope's owner) steps down when its next renewal finds the
    /// lease gone: its work is cancelled then, and another candidate takes over.
    /// Works on an SQL table of ShedLock for Java alone (no companion
    /// tables): the row's lease ends.
    Unlock {
        /// The lock's name.
        name: String,
        /// Required: confirms that other replicas' leases end while their jobs may still run.
        #[arg(long)]
        force: bool,
    },
}

/// `30d`, `12h 30m`, `500ms`: humantime's durations.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (e.g. 30d, 12h, 90m)"))
}

impl Command {
    /// The lock name the command works on, if it takes one.
    fn name(&self) -> Option<&str> {
        match self {
            Command::Show { name }
            | Command::Pause { name }
            | Command::Resume { name }
            | Command::Capacity { name, .. }
            | Command::History { name }
            | Command::Unlock { name, .. } => Some(name),
            Command::List | Command::Prune { .. } => None,
        }
    }
}

/// A usage mistake: printed, exit code 2.
fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// The store URL: --store, else --redis, given on the command line; else
/// SHEDLOCK_STORE_URL, else SHEDLOCK_REDIS_URL; else the local Redis.
fn store_url<'a>(cli: &'a Cli, matches: &ArgMatches) -> Result<&'a str, String> {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if given("store") && given("redis") {
        return Err("--store and --redis both name the store; give only --store".to_owned());
    }
    let (store, redis) = (cli.store.as_deref(), cli.redis.as_deref());
    let url = if given("redis") {
        redis
    } else {
        store.or(redis)
    };
    Ok(url.unwrap_or(DEFAULT_STORE))
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let format = if cli.json { Format::Json } else { Format::Text };
    let url = match store_url(&cli, &matches) {
        Ok(url) => url,
        Err(message) => return usage_error(message),
    };
    let kind = match StoreKind::of(url) {
        Ok(kind) => kind,
        Err(message) => return usage_error(message),
    };
    if let Some(name) = cli.command.name()
        && let Err(err) = kind.check_name(name)
    {
        return usage_error(format!("{err} (lock name {name:?})"));
    }
    if let Command::Unlock { force: false, name } = &cli.command {
        return usage_error(format!(
            "`unlock {name}` ends the leases of jobs that may still be running; \
             run `shedlock unlock {name} --force` if you mean it"
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_STORE);
        }
    };
    match runtime.block_on(run(&cli, kind, url, format)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            // Each cause once, below the message that says what to do.
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                eprintln!("  caused by: {inner}");
                cause = inner.source();
            }
            let code = match err {
                LockError::InvalidConfiguration(_) => EXIT_USAGE,
                _ => EXIT_STORE,
            };
            ExitCode::from(code)
        }
    }
}

/// The lock's recorded runs, the newest first; none from a store that keeps
/// no history.
async fn last_runs(admin: &dyn LockAdmin, name: &str) -> Result<Vec<RunRecord>, LockError> {
    match admin.run_history(name).await {
        Err(LockError::Unsupported { .. }) => Ok(Vec::new()),
        runs => runs,
    }
}

async fn run(cli: &Cli, kind: StoreKind, url: &str, format: Format) -> Result<(), LockError> {
    let place = Place {
        prefix: &cli.prefix,
        environment: &cli.environment,
        table: &cli.table,
        statement_timeout: cli
            .timeout
            .unwrap_or(shedlock_sql::DEFAULT_STATEMENT_TIMEOUT),
    };
    let store = Store::connect(kind, url, &place).await?;
    let admin = store.admin();
    let show = |name: &str, action: Option<&str>| {
        let store = &store;
        let name = name.to_owned();
        let action = action.map(str::to_owned);
        async move {
            let state = store.admin().lock_state(&name).await?;
            let runs = last_runs(store.admin(), &name).await?;
            let recent = Recent {
                last_run: runs.first(),
                last_tick: store.admin().last_tick(&name).await?,
                missed: runs.iter().find(|run| run.outcome == RunOutcome::Missed),
            };
            print_state(
                format,
                &state,
                store.location(&name),
                action.as_deref(),
                &recent,
            );
            Ok::<(), LockError>(())
        }
    };
    match &cli.command {
        Command::List => {
            let locks = admin.list_locks().await?;
            let names: Vec<String> = locks.iter().map(|lock| lock.name.clone()).collect();
            let last = match admin.last_runs(&names).await {
                Err(LockError::Unsupported { .. }) => vec![None; names.len()],
                last => last?,
            };
            let locks: Vec<_> = locks.into_iter().zip(last).collect();
            print_list(format, &locks);
        }
        Command::History { name } => {
            let runs = admin.run_history(name).await?;
            output::print_history(format, name, &runs);
        }
        Command::Show { name } => show(name, None).await?,
        Command::Pause { name } => {
            admin.pause(name).await?;
            show(name, Some("paused")).await?;
        }
        Command::Resume { name } => {
            admin.resume(name).await?;
            show(name, Some("resumed")).await?;
        }
        Command::Capacity { name, capacity } => {
            admin.set_capacity(name, *capacity).await?;
            show(name, Some("capacity set")).await?;
        }
        Command::Unlock { name, .. } => {
            let released = admin.force_release(name).await?;
            output::print_unlocked(format, name, released);
        }
        Command::Prune { unused_for } => {
            let pruned = store.prune(*unused_for).await?;
            print_pruned(format, *unused_for, store.table().as_deref(), pruned);
        }
    }
    Ok(())
}
