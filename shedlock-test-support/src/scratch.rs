//! Directories for the files of the servers tests start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new, empty directory `shedlock-{kind}-{pid}-{n}` in the temporary
/// directory, unique within this process; the caller removes it.
pub(crate) fn new_scratch_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shedlock-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        fail!("cannot create {}: {err}", dir.display());
    }
    dir
}
