//! Pooled connections belong to the Tokio runtime that opened them. Once
//! that runtime is gone they fail, and not always at the pool's ping before
//! use (a socket whose readiness was cached passes it, then fails the
//! statement, perhaps after sending it). So the first call from another
//! runtime looks whether the previous one is gone, and if so the pool's
//! idle connections are closed before any statement is sent.

use std::sync::Mutex;

use tokio::runtime::Handle;

/// The runtime the engine's last call came from.
#[derive(Default)]
pub(crate) struct RuntimeWatch {
    last: Mutex<Option<Handle>>,
}

impl RuntimeWatch {
    /// Whether this call comes from another runtime than the last one, and
    /// that one is gone. One comparison of runtime ids on every call.
    pub(crate) fn left_a_gone_runtime(&self) -> bool {
        let Ok(current) = Handle::try_current() else {
            return false;
        };
        let previous = {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match last.as_ref() {
                Some(last) if last.id() == current.id() => return false,
                _ => last.replace(current),
            }
        };
        previous.is_some_and(|previous| is_gone(&previous))
    }
}

/// Whether the runtime of `handle` has shut down: a task spawned on it is
/// cancelled at once. (One that is alive runs the empty probe, or drops it
/// here unrun; either way it is not taken for gone.)
fn is_gone(handle: &Handle) -> bool {
    let probe = handle.spawn(std::future::pending::<()>());
    let gone = probe.is_finished();
    probe.abort();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_runtime_is_gone_and_a_live_one_is_not() {
        let build = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap_or_else(|err| panic!("{err}")) // allow-panic: unit test
        };
        let (dropped, live) = (build(), build());
        let handle = dropped.handle().clone();
        drop(dropped);
        assert!(is_gone(&handle));
        assert!(!is_gone(live.handle()));

        let watch = RuntimeWatch::default();
        let first = build();
        first.block_on(async { assert!(!watch.left_a_gone_runtime()) });
        drop(first);
        live.block_on(async {
            assert!(watch.left_a_gone_runtime());
            assert!(
                !watch.left_a_gone_runtime(),
                "only the first call after the change"
            );
        });
    }
}
