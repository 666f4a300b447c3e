//! shedlock: placeholder facade while the crates are written.
pub use shedlock_core::*;
pub use shedlock_macros::scheduler_lock;
#[cfg(feature = "redis")]
pub mod redis {
    pub use shedlock_redis::*;
}
#[doc(hidden)]
pub mod __private {
    pub use shedlock_core::private::*;
}
