//! PostgreSQL, MySQL/MariaDB and SQLite lock providers for
//! [shedlock](https://docs.rs/shedlock), on ShedLock's table, so Java and Rust
//! services can share locks:
//!
//! ```sql
//! CREATE TABLE shedlock(
//!     name VARCHAR(64) NOT NULL PRIMARY KEY,
//!     lock_until TIMESTAMP(3) NOT NULL,
//!     locked_at TIMESTAMP(3) NOT NULL,
//!     locked_by VARCHAR(255) NOT NULL,
//!     fencing_token BIGINT NOT NULL DEFAULT 0  -- optional, see below
//! );
//! ```
//!
//! and, beside it, four companion tables of shedlock's own (ShedLock for
//! Java never reads them): what operators set (capacities and pauses), the
//! last runs of each lock, the shared holders, and the queued exclusive
//! waiters.
//!
//! ```sql
//! CREATE TABLE shedlock_settings(
//!     name VARCHAR(64) NOT NULL PRIMARY KEY,
//!     capacity INT NOT NULL CHECK (capacity >= 0),  -- 0: paused
//!     resume_to INT                                  -- the capacity a resume restores
//! );
//! CREATE TABLE shedlock_runs(                        -- PostgreSQL's; see the README for the others
//!     id BIGSERIAL PRIMARY KEY,
//!     name VARCHAR(64) NOT NULL,
//!     started_at TIMESTAMP(3) NOT NULL,
//!     finished_at TIMESTAMP(3) NOT NULL,             -- the database's clock at the release
//!     duration_ms BIGINT NOT NULL,
//!     outcome VARCHAR(16) NOT NULL,                  -- ok, error, panic, lease_lost
//!     locked_by VARCHAR(255) NOT NULL,
//!     fencing_token BIGINT,
//!     UNIQUE (name, id)
//! );
//! CREATE TABLE shedlock_holders(                     -- shared and counted holders
//!     name VARCHAR(64) NOT NULL,
//!     locked_by VARCHAR(255) NOT NULL,               -- unique per acquisition
//!     permits INT NOT NULL CHECK (permits >= 0),     -- 0: an exclusive holder's renewals
//!     locked_at TIMESTAMP(3) NOT NULL,
//!     lock_until TIMESTAMP(3) NOT NULL,
//!     fencing_token BIGINT,
//!     renewals BIGINT NOT NULL DEFAULT 0,
//!     renewed_at TIMESTAMP(3) NOT NULL,
//!     PRIMARY KEY (name, locked_by)
//! );
//! CREATE TABLE shedlock_waiters(                     -- exclusive waiters ahead of new shared holders
//!     name VARCHAR(64) NOT NULL,
//!     waiter VARCHAR(64) NOT NULL,
//!     queued_until TIMESTAMP(3) NOT NULL,
//!     PRIMARY KEY (name, waiter)
//! );
//! CREATE TABLE shedlock_ticks(                       -- the last tick each lock claimed (for_tick)
//!     name VARCHAR(64) NOT NULL,
//!     last_tick BIGINT NOT NULL,                     -- ms since 1970; -1: none yet
//!     previous_tick BIGINT,                          -- the one claimed before it
//!     claimed_at TIMESTAMP(3) NOT NULL,
//!     claimed_by VARCHAR(255) NOT NULL,
//!     PRIMARY KEY (name)
//! );
//! ```
//!
//! Each database is a feature: `postgres` ([`PostgresLockProvider`]),
//! `mysql` ([`MySqlLockProvider`]), `sqlite` ([`SqliteLockProvider`]). Each
//! provider is built from a URL (`connect`) or from an sqlx pool (`new`);
//! `create_table_if_missing()` creates the six tables (`<table>_settings`,
//! `<table>_runs`, `<table>_holders`, `<table>_waiters` and `<table>_ticks`
//! for another table name). At the first lock, the
//! provider checks that they exist with these columns; a missing one, or one
//! with other columns, is a
//! [`LockError::Store`](shedlock_core::LockError::Store) that gives its DDL.
//!
//! # Ticks
//!
//! An acquisition for a tick (`LockConfiguration::for_tick`) runs in one
//! transaction: the name's row of `<table>_ticks` is made if missing and
//! locked, the last claimed tick read, the lock taken as usual and the
//! claim recorded, or nothing happens (the tick or a later one was claimed,
//! the lock is held or paused). Claimers of one name take turns on that
//! row, so a replica that fires for a tick a moment after another finds its
//! claim however soon the other released the lock. ShedLock's table is not
//! touched beyond the usual acquisition. `prune` removes the tick rows of
//! names whose lock row it removed.
//!
//! # Last runs
//!
//! A release after a run (the executor's, the attribute's) records it in
//! `<table>_runs` with the database's clock as its finish, in the release's
//! transaction (on PostgreSQL in the release statement itself), and deletes
//! the name's runs past the last 20; a lease found ended records the run as
//! `lease_lost`. `LockAdmin::run_history` reads them, the newest first.
//! Off by default (it costs the release a transaction, see BENCHMARKS.md):
//! turn it on with `with_run_history(true)`.
//!
//! # Operators
//!
//! The providers are a [`LockAdmin`](shedlock_core::LockAdmin) (the
//! `shedlock` command uses it): a lock's state is its row's live exclusive
//! lease (by the database's clock), its live shared holders, its queued
//! exclusive waiters and its settings row; `pause` stores capacity 0,
//! `resume` the capacity from before; `force_release` ends every live
//! lease now. Every acquisition reads the lock's capacity in its own statement
//! (a primary-key lookup in the settings table) and takes nothing while it
//! is 0: a paused job is skipped (`Ok(None)`) on every replica from the
//! pause on, while a running holder finishes. A configuration's own
//! capacity (`with_capacity(0)`: paused until an operator sets one) counts
//! when none is stored.
//!
//! # Lock kinds
//!
//! Shared and counted locks (`LockConfiguration::shared`, `with_permits`,
//! `with_capacity`) keep each holder in `<table>_holders`. While shared
//! holders hold a lock, its row in ShedLock's table is their marker
//! (`locked_by = '#shared-holders'`) and its `lock_until` is the latest end
//! of their leases, so exclusive acquisitions (the one-statement ones
//! above, and ShedLock for Java's) find it held. Every shared acquisition,
//! extension and release, and `force_release`, is one transaction that
//! first locks the name's row (`SELECT .. FOR UPDATE`; on SQLite the
//! file's write lock): one name's operations run one after another, so the
//! permits held never exceed the capacity and an exclusive holder never runs
//! beside shared ones. An exclusive waiter (`wait_for`) whose attempt fails
//! queues in `<table>_waiters`, and new shared holders stay out while a place
//! is held (each lasts a moment past the waiter's last attempt), so a stream
//! of shared jobs cannot starve an exclusive one. An exclusive holder's
//! renewals (`extend`: keep-alive, leaders) are counted in a holders row of
//! 0 permits, for `lock_state`. On MySQL/MariaDB these transactions run at
//! `READ COMMITTED` (no gap locks, so neighbouring names never deadlock).
//!
//! # Semantics
//!
//! - Every time is the database's clock (PostgreSQL `now()`, MySQL
//!   `UTC_TIMESTAMP(3)`, SQLite `strftime(.., 'now')`, all UTC), never this
//!   process's: replicas with skewed clocks still agree.
//! - A row is inserted the first time a name is locked and updated after,
//!   never deleted by a lock operation (`prune` deletes the rows of locks
//!   unused for a while). A lock is free when its `lock_until` has passed.
//!   Acquisition is one atomic statement (on MySQL an `UPDATE`, then an
//!   `INSERT IGNORE` when no row matched).
//! - `locked_by` is `{locked_by};id={unique id}`, unique per acquisition;
//!   extension and release match it and a live `lock_until`, so a holder whose
//!   lease ended never touches the next holder's row.
//! - `unlock` sets `lock_until` to the later of `locked_at + lock_at_least_for`
//!   (the database's `locked_at`) and the end the guard asks for, never later
//!   than it was.
//! - Lock names are at most 64 characters (the column): longer ones are
//!   [`LockError::InvalidConfiguration`](shedlock_core::LockError::InvalidConfiguration)
//!   before any statement.
//! - An acquisition whose answer does not come within the statement timeout
//!   (default [`DEFAULT_STATEMENT_TIMEOUT`]) is reported as
//!   `AcquisitionUncertain`, never as "held": the statement's answer is
//!   still awaited in the background, and whatever it took is released then
//!   by its unique `locked_by`. After a broken connection, the row is looked
//!   for (and released) with backoff until `lock_at_most_for` has passed.
//! - Connections (PostgreSQL, MySQL): the pool `connect` makes pings each
//!   connection right before a lock operation uses it, so one the server
//!   closed (`idle_session_timeout`, `wait_timeout`, a restart) is replaced
//!   rather than failing the operation, and closes idle ones after a minute.
//!   While the server is down, an operation fails after 2 s with
//!   [`LockError::Store`](shedlock_core::LockError::Store); the next one
//!   connects again. See `pool_options` on each provider.
//! - Waiting (`wait_for`): a release in this process wakes this process's
//!   waiters on the same table at once. On PostgreSQL a release also
//!   announces the lock's name (`pg_notify` on the channel
//!   `shedlock:<table>`, in the release statement), and each provider with
//!   waiters listens on one connection of its own (`LISTEN`, opened when
//!   something first waits, replaced when lost, after which every waiter
//!   tries again), so waiters in other processes wake within milliseconds.
//!   MySQL/MariaDB and SQLite announce nothing: there, waiters in other
//!   processes poll with backoff (10 ms doubling to 500 ms). Everywhere, a
//!   failed attempt of a waiter reads when the holder's lease ends (one more
//!   statement), so a waiter takes over an abandoned lease a few
//!   milliseconds after its end rather than at its next poll.
//!
//! # Fencing tokens
//!
//! With the optional `fencing_token BIGINT` column, each acquisition
//! increments it in the acquisition statement and its value is the token.
//! A new row's counter starts at the database's clock in microseconds since
//! 1970 (milliseconds times 1000 on SQLite), then counts acquisitions, so a
//! row deleted (by `prune`, or by hand) and made again gives tokens above
//! all it gave before, as long as the database's clock is not set back.
//! Whether the column exists is detected at the first lock (or set with
//! `with_fencing_column`).
//!
//! On ShedLock's plain table there is no counter: the token is the
//! database's clock at acquisition in microseconds since 1970 (milliseconds
//! times 1000 on SQLite). It grows as long as that clock does: a clock set
//! back, or (on SQLite) two acquisitions of one name within a millisecond,
//! break the "strictly greater" promise. Add the column where tokens matter.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod dialect;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod driver;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod engine;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod fragments;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg_releases;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod provider;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod releases;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod statements;
mod table;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod template;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod ticks;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite")))
)]
pub use engine::DEFAULT_STATEMENT_TIMEOUT;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use mysql::{MySql, MySqlLockProvider};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{Postgres, PostgresLockProvider};
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite")))
)]
pub use provider::{SqlDatabase, SqlLockProvider, SqlServer};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{DEFAULT_BUSY_TIMEOUT, Sqlite, SqliteLockProvider};
pub use table::{DEFAULT_TABLE_NAME, MAX_SQL_NAME_LEN};

/// The `sqlx` crate these providers are built on, for building pools.
pub use sqlx;
