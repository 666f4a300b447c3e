//! Test support for [shedlock](https://docs.rs/shedlock): the conformance
//! suites every lock provider passes, and the helpers the project's tests
//! use (worker processes, private servers). It is a dev-dependency only: no
//! library crate of shedlock depends on it.
//!
//! # Testing a provider of your own
//!
//! A provider written outside this repository proves it keeps the semantics
//! of `shedlock` by passing the same suites as the built-in ones. Add the
//! crate and Tokio as dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! shedlock-test-support = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! and, in a test file (`tests/conformance.rs`), give a function that makes
//! a new provider (a new connection to the test store) on each call:
//!
//! ```ignore
//! async fn provider() -> MyLockProvider {
//!     MyLockProvider::connect("my-store://127.0.0.1").await.expect("the test store") // allow-panic: example
//! }
//!
//! shedlock_test_support::provider_conformance_tests!(provider);
//!
//! // Providers that are also a `LockAdmin` (shared and counted locks,
//! // capacity, pause) run the lock-kinds suite too:
//! mod kinds {
//!     shedlock_test_support::lock_kinds_conformance_tests!(super::provider);
//! }
//! ```
//!
//! Each macro generates one `#[tokio::test]` per case, so `cargo test` runs
//! and reports them one by one; the cases are also functions
//! ([`conformance`], [`kinds`]) to call from tests of your own. Cases use lock
//! names of their own and may run in parallel against one store; cases that
//! need several holders make several providers, so their state is shared
//! through the store alone.
//!
//! # Features
//!
//! - `redis`: private `redis-server` processes, Sentinels and Clusters (the
//!   module `redis`), and a TCP proxy that injects network faults (`proxy`);
//! - `sql`: the test databases and private PostgreSQL and MariaDB servers
//!   (the module `sql`).
//!
//! Every helper reports a failure by panicking, as a failed test should: a
//! test that needs a server fails, and says how to install it, rather than
//! being skipped.

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Fails the running test: how test support reports a broken guarantee or a
/// missing server.
macro_rules! fail {
    ($($message:tt)*) => {
        panic!($($message)*) // allow-panic: a failure in test support is a test failure
    };
}

/// In a `LockProvider` impl of a wrapper, the methods it leaves to the
/// provider in its field `$inner`: release watches, scope and replica
/// identity.
macro_rules! delegate_to_inner {
    ($inner:ident) => {
        fn watch_releases<'a>(
            &'a self,
            name: &'a str,
        ) -> shedlock_core::BoxFuture<'a, shedlock_core::ReleaseWatch> {
            self.$inner.watch_releases(name)
        }

        fn scope(&self) -> &str {
            self.$inner.scope()
        }

        fn replica_identity(&self) -> &str {
            self.$inner.replica_identity()
        }
    };
}

/// One `#[tokio::test]` per case of a suite module, each given `make`: the
/// body of the suites' macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __test_cases {
    ($module:ident, $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::$module::$case($make).await;
            }
        )*
    };
}

pub mod attempts;
pub mod conformance;
mod error_chain;
pub mod faults;
pub mod kinds;
pub mod leader;
mod polling;
mod ports;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod runtimes;
pub mod scopes;
mod scratch;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(feature = "sql")))]
pub mod sql;
pub mod ticks;
pub mod tls;
pub mod worker;

pub use error_chain::{causes, error_chain};
pub use polling::wait_for;
pub use ports::free_port;
pub use worker::{Worker, now_ms, sleep_until_ms};
