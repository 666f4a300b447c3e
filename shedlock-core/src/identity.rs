//! Who holds a lock (`locked_by`) and unique values for each acquisition.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// This process's default `locked_by`: `"{host name}:{process id}"`.
pub fn default_locked_by() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// The machine's host name (the OS's, else `$HOSTNAME` or `%COMPUTERNAME%`),
/// or `"unknown-host"` when none can be read.
pub fn host_name() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        gethostname::gethostname()
            .into_string()
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned())
    })
    .clone()
}

/// A value no other acquisition in any process will produce: a random
/// per-process prefix (so a reused pid or host name cannot collide), the
/// process id (a forked child keeps the prefix) and a counter.
pub fn unique_acquisition_id() -> String {
    let mut id = String::with_capacity(UNIQUE_ACQUISITION_ID_MAX_LEN);
    write_unique_acquisition_id(&mut id);
    id
}

/// The longest [`unique_acquisition_id`]: 16 + 1 + 8 + 1 + 16 hex digits and dashes.
pub const UNIQUE_ACQUISITION_ID_MAX_LEN: usize = 42;

/// Appends a [`unique_acquisition_id`] to `out` (no allocation of its own:
/// providers build a lock value per acquisition).
pub fn write_unique_acquisition_id(out: &mut String) {
    static PROCESS_NONCE: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nonce = PROCESS_NONCE.get_or_init(|| {
        // RandomState is seeded from the OS's random source.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        format!("{:016x}", hasher.finish())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    out.push_str(nonce);
    out.push('-');
    // The pid too: a forked child inherits the nonce and the counter.
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{:x}-{n:x}", std::process::id());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquisition_ids_are_unique() {
        let ids: std::collections::HashSet<_> =
            (0..1000).map(|_| unique_acquisition_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() <= UNIQUE_ACQUISITION_ID_MAX_LEN)
        );
    }

    #[test]
    fn locked_by_names_host_and_process() {
        let by = default_locked_by();
        assert!(by.ends_with(&format!(":{}", std::process::id())), "{by}");
        assert!(!host_name().is_empty());
    }
}
