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
//! `ADDED:<locked_at>@<locked_by>;id=<unique id>`. Its fencing counter lives in
//! `{job-lock:default:{name}}:fence`, in the same Redis Cluster slot.

mod connection;
mod keys;
mod provider;
mod releases;
mod scripts;
mod value;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use provider::{DEFAULT_CONNECTION_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisLockProvider};
pub use value::LockValue;

/// The `redis` crate this provider is built on, for `Client` and `ConnectionManagerConfig`.
pub use redis;
