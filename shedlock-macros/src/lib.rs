//! The `#[scheduler_lock]` attribute of [shedlock](https://docs.rs/shedlock):
//! run an `async fn` only while holding a lock, so that a scheduled job runs at
//! most once at a time across every replica of a service.
//!
//! Use it through the facade, `shedlock::scheduler_lock`: the expansion calls
//! `shedlock`'s runtime, and the facade's documentation has a runnable example.
//! This crate only parses and checks the attribute at compile time.
//!
//! ```ignore
//! use shedlock::scheduler_lock;
//!
//! #[scheduler_lock(name = "report-{region}", lock_at_most_for = "10m", lock_at_least_for = "30s")]
//! async fn report(region: &str) -> Result<usize, String> {
//!     let rows = fetch(region).await?;
//!     Ok(rows.len())
//! }
//!
//! // The function now returns Result<Option<Result<usize, String>>, shedlock::LockError>:
//! match report("eu").await? {
//!     Some(Ok(rows)) => println!("sent {rows} rows"),
//!     Some(Err(error)) => eprintln!("the report failed: {error}"),
//!     None => println!("another replica holds report-eu; skipped"),
//! }
//! ```
//!
//! # Keys
//!
//! | key | value | default |
//! |---|---|---|
//! | `name` | string literal; `{arg}` placeholders take the function's arguments | required |
//! | `lock_at_most_for` | duration string | the installed default |
//! | `lock_at_least_for` | duration string | the installed default, else 0 |
//! | `wait_for` | duration string: wait up to this long for a held lock, run as soon as it is free | skip at once |
//! | `keep_alive` | `true`: extend the lease every third of `lock_at_most_for` while the body runs | `false` |
//! | `cancel_on_lease_loss` | `true`: drop the body when its lease is lost and return `Err(LockError::LeaseLost)` | `false` |
//! | `mode` | `"exclusive"`: the whole lock; `"shared"`: one permit, beside other shared holders | `"exclusive"` |
//! | `permits` | whole number ≥ 1: a counted holder taking this many permits (implies shared) | none |
//! | `capacity` | whole number: the lock's capacity while the store holds none (0: paused) | 1 exclusive, unlimited shared |
//! | `scope` | string literal; `{arg}` placeholders as in `name`: run on the replica that owns this scope (a leader lease kept between ticks) | none |
//! | `every` | duration string: the call claims the interval's tick nearest to now (aligned on 1970), so each tick runs once across replicas | none |
//! | `misfire` | `"skip"` or `"run_once"`, with `every`: what a call does about the last tick when no replica ran it (always reported as missed) | `"skip"` |
//! | `provider` | an expression giving the provider | the installed default |
//! | `crate` | path of the `shedlock` facade | `::shedlock` |
//!
//! - **`mode`, `permits`, `capacity`**: lock kinds. Shared holders run
//!   together; an exclusive holder needs no other holder, and a waiting one
//!   goes before new shared holders. The permits of all holders never exceed
//!   the capacity; an operator's capacity (set at run time) wins over
//!   `capacity`. Compile errors: `permits = 0`, `permits` with
//!   `mode = "exclusive"`, `permits` above `capacity`, an unknown mode.
//! - **`every = "..."`**: the call claims a tick of an interval schedule
//!   (`LockConfiguration::for_tick`): the tick nearest to now, counted from
//!   1970, so replicas whose clocks or schedulers are apart by less than half
//!   an interval claim the same one. A tick runs at most once across all
//!   replicas, however short the job, without `lock_at_least_for`; a later
//!   call for the same tick skips (`Ok(None)`). Ticks between the claim
//!   before and this one are reported as missed (a `warn` event and
//!   `shedlock_missed_ticks_total`). With `misfire = "run_once"`, a call
//!   nearer the next tick than the last one runs for the last one when no
//!   replica claimed it (a catch-up, once across replicas); with `"skip"`
//!   (the default) it claims the nearest. Compile errors: a zero interval,
//!   `every` with `scope` or a shared mode, `misfire` without `every` or
//!   with another value.
//! - **`name = "..."`**: the lock's name, unique per job. It may contain
//!   placeholders in Rust's format syntax that name the function's arguments
//!   (`"report-{region}"`, `"{tenant}:{id:>04}"`): each distinct value gets its
//!   own lock. The name is formatted when the function is called, before the
//!   body runs; the compiler checks the placeholders. A name without
//!   placeholders costs no allocation.
//! - **`lock_at_most_for = "..."`**: how long a lease lasts at most, even if
//!   the holder dies; set it longer than the job normally runs. Durations are
//!   humantime strings (`"30s"`, `"5m"`, `"1h 30m"`, `"500ms"`) or ISO-8601
//!   durations as ShedLock writes them (`"PT30S"`, `"PT1H30M"`, `"PT0.5S"`,
//!   `"P1D"`), parsed at compile time. Without it, the default given to
//!   `SchedulerLock::builder(..).default_lock_at_most_for(..)` applies.
//! - **`lock_at_least_for = "..."`**: how long the lock is kept at least,
//!   even if the job ends sooner, so that replicas whose schedulers fire a
//!   little apart do not run the same tick twice. At most `lock_at_most_for`.
//! - **`scope = "..."`**: the job runs on the replica that owns the scope
//!   (`scope = "db-{db}"`), a leader lease under the lock `scope:<scope>`
//!   that the owner takes at the scope's first tick and renews in the
//!   background; later ticks on the owner run without a round trip to the
//!   store, other replicas skip. Jobs with one scope run on one owner.
//!   `name` still keeps two runs of the job on the owner apart. Compile
//!   errors: `scope` with `keep_alive = true` (the scope's lease is kept
//!   already), with `mode = "shared"` or `permits`, or with `capacity` (a
//!   scoped job runs on its owner alone).
//! - **`provider = <expr>`**: the lock provider to use instead of the one
//!   installed with `SchedulerLock::install`: a provider, a reference to one, an
//!   `Arc<P>` or an `Arc<dyn LockProvider>`, e.g. `provider = self.locks` or
//!   `provider = &*LOCKS`. The expression is evaluated when the function is
//!   called. In a `&mut self` method it cannot borrow from `self` (the body
//!   needs `self` mutably): clone it instead, `provider = self.locks.clone()`.
//! - **`crate = path`**: where the `shedlock` facade is, when the dependency is
//!   renamed: `crate = my_shedlock` or `crate = ::renamed`.
//!
//! # What it expands to
//!
//! The function keeps its attributes, visibility, name, generics, `where`
//! clause, receiver (`&self`, `&mut self`, `self`) and arguments; its output
//! `T` becomes `Result<Option<T>, shedlock::LockError>`:
//!
//! - `Ok(Some(output))`: the lock was taken and the body ran;
//! - `Ok(None)`: the lock is held elsewhere, the body did not run;
//! - `Err(error)`: the store failed, or no provider is configured
//!   (`LockError::NotConfigured`); the body did not run.
//!
//! `?` and `return` inside the body keep their meaning: they leave the body
//! with a `T`. The body runs with the lock as its task's current lock
//! (`shedlock::current_lock()`, `shedlock::assert_locked()`); calling another
//! locked function of the same name from it runs directly (reentrancy). A panic
//! in the body releases the lock, then propagates. The returned future is
//! `Send` when the body is.
//!
//! In a trait implementation, the trait's declaration must return the wrapped
//! type too, since the attribute only sees the implementation.
//!
//! # Errors
//!
//! Every mistake is a compile error at the offending token: an unknown or
//! repeated key, a missing or blank `name`, a value that is not a string
//! literal, a duration that does not parse, a zero `lock_at_most_for`, a
//! `lock_at_least_for` longer than `lock_at_most_for`, and an item that is
//! not an `async fn` with a body. The function is then emitted unchanged
//! beside the errors, so the rest of the crate still type-checks.

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod duration;
mod expand;

use proc_macro::TokenStream;

/// Runs the `async fn` only while holding the lock `name`; see the [crate docs](crate).
///
/// ```ignore
/// #[shedlock::scheduler_lock(name = "nightly-report", lock_at_most_for = "10m")]
/// async fn nightly_report() { /* .. */ }
/// ```
#[proc_macro_attribute]
pub fn scheduler_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::scheduler_lock(args.into(), item.into()).into()
}
