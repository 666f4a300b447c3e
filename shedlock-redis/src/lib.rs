//! Redis lock provider for [shedlock](https://docs.rs/shedlock).
//!
//! ```no_run
//! use shedlock_redis::RedisLockProvider;
//!
//! # async fn run() -> Result<(), shedlock_core::LockError> {
//! let provider = RedisLockProvider::connect("redis://127.0.0.1:6379")
//!     .await?
//!     .with_environment("production");
//! # Ok(()) }
//! ```
//!
//! Redis Cluster: [`RedisLockProvider::connect_cluster`]; Sentinel:
//! [`RedisLockProvider::connect_sentinel`].
//!
//! One lock is one key, `job-lock:default:{name}` by default, holding
//! `ADDED:<locked_at>@<locked_by>;id=<unique id>` while an exclusive holder has
//! it (followed by `;waited` once another process waits for it: only then does
//! the release publish a notification). Its auxiliary keys live in the same Redis Cluster slot:
//! `{job-lock:default:{name}}:fence` (the fencing counter), `:holders` (shared
//! holders), `:waiters` (queued exclusive waiters) and `:settings` (capacity).
//! A name with a hash tag of its own (`report-{tenant}`) keeps that tag:
//! `{tenant}:job-lock:default:report-{tenant}:fence`.
//!
//! The provider is also a [`LockAdmin`](shedlock_core::LockAdmin): lock
//! state, capacity, pause and resume, force-release.

// On docs.rs (`--cfg docsrs`), items that need a feature say which.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection;
mod errors;
mod keys;
mod lease;
mod provider;
mod releases;
mod replica_acks;
mod scripts;
mod value;

pub use provider::{DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisLockProvider};

/// What the lock-cycle bench sends through the raw client to measure the
/// least shedlock's own commands cost (its "bound" path): not part of the
/// API, and may change with any release.
#[doc(hidden)]
pub mod bench_support {
    /// The release script a plain exclusive lease is released with.
    pub fn release_script() -> &'static redis::Script {
        &crate::scripts::RELEASE
    }

    /// A new acquisition's lock value for `locked_by`.
    pub fn lock_value(locked_by: &str) -> String {
        crate::value::new_lock_value(locked_by)
    }

    /// The channel a release publishes a freed lock on (when waited for).
    pub const RELEASE_CHANNEL: &str = crate::releases::RELEASE_CHANNEL;
}

/// The `redis` crate this provider is built on, for `Client` and `AsyncConnectionConfig`.
pub use redis;
