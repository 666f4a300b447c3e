//! `shedlock`: the operator's command for shedlock locks in Redis.
//!
//! ```text
//! shedlock list                      every lock: kind, holders, time left, term, last renewal, capacity, paused
//! shedlock show NAME                 one lock in detail
//! shedlock pause NAME                capacity 0: nobody acquires it (holders finish)
//! shedlock resume NAME               the capacity from before the pause
//! shedlock capacity NAME N           store the capacity (0 pauses)
//! shedlock unlock NAME --force       end every lease of the lock now
//! ```
//!
//! The server comes from `--redis URL` or `SHEDLOCK_REDIS_URL`; `--json` prints
//! machine-readable output. Exit codes: 0 done, 1 the store failed or could
//! not be reached, 2 a usage mistake (including `unlock` without `--force`).
//! Passwords in the URL are never printed.

mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shedlock_core::{LockAdmin, LockError};
use shedlock_redis::RedisLockProvider;

use crate::output::{Format, print_list, print_state};

/// Exit code: the store failed or could not be reached.
const EXIT_STORE: u8 = 1;
/// Exit code: a usage mistake (clap's own errors use it too).
const EXIT_USAGE: u8 = 2;

/// Inspect and operate shedlock locks in Redis: list and show them, pause and
/// resume them, change their capacity, or force-release them.
#[derive(Parser, Debug)]
#[command(name = "shedlock", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 done; 1 the store failed or could not be reached; \
                         2 a usage mistake (including unlock without --force)."
)]
struct Cli {
    /// Redis URL: redis://[user:password@]host:port[/db] (the password is never printed).
    #[arg(
        long,
        env = "SHEDLOCK_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        global = true
    )]
    redis: String,

    /// First part of every lock key, as the services' providers use it.
    #[arg(long, default_value = "job-lock", global = true)]
    prefix: String,

    /// Second part of every lock key (e.g. staging, production).
    #[arg(long, default_value = "default", global = true)]
    environment: String,

    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,

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
    /// End every lease of a lock now. The holders' jobs are not stopped and
    /// keep running; fencing tokens let a downstream store refuse them. A
    /// leader (or a scope's owner) steps down when its next renewal finds the
    /// lease gone: its work is cancelled then, and another candidate takes over.
    Unlock {
        /// The lock's name.
        name: String,
        /// Required: confirms that other replicas' leases end while their jobs may still run.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.json { Format::Json } else { Format::Text };
    if let Command::Unlock { force: false, name } = &cli.command {
        eprintln!(
            "error: `unlock {name}` ends the leases of jobs that may still be running; \
             run `shedlock unlock {name} --force` if you mean it"
        );
        return ExitCode::from(EXIT_USAGE);
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
    match runtime.block_on(run(&cli, format)) {
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

async fn run(cli: &Cli, format: Format) -> Result<(), LockError> {
    let provider = RedisLockProvider::connect(&cli.redis)
        .await?
        .with_key_prefix(cli.prefix.as_str())
        .with_environment(cli.environment.as_str());
    match &cli.command {
        Command::List => {
            let locks = provider.list_locks().await?;
            print_list(format, &locks);
        }
        Command::Show { name } => {
            let state = provider.lock_state(name).await?;
            print_state(format, &state, &provider.lock_key(name), None);
        }
        Command::Pause { name } => {
            provider.pause(name).await?;
            let state = provider.lock_state(name).await?;
            print_state(format, &state, &provider.lock_key(name), Some("paused"));
        }
        Command::Resume { name } => {
            provider.resume(name).await?;
            let state = provider.lock_state(name).await?;
            print_state(format, &state, &provider.lock_key(name), Some("resumed"));
        }
        Command::Capacity { name, capacity } => {
            provider.set_capacity(name, *capacity).await?;
            let state = provider.lock_state(name).await?;
            print_state(
                format,
                &state,
                &provider.lock_key(name),
                Some("capacity set"),
            );
        }
        Command::Unlock { name, .. } => {
            let released = provider.force_release(name).await?;
            output::print_unlocked(format, name, released);
        }
    }
    Ok(())
}
