//! The Lua scripts behind every lock operation. `redis::Script` sends them
//! by SHA (EVALSHA) and loads them on a NOSCRIPT reply.

use std::sync::LazyLock;

use redis::Script;

/// `SET NX PX` plus the fencing token, in one atomic round trip.
pub(crate) static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/acquire.lua")));

/// Compare-and-delete (or compare-and-shorten for `lock_at_least_for`).
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));

/// Compare-and-expire.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));
