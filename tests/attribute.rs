//! `#[scheduler_lock]` at run time, against the in-memory provider.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use shedlock::{InMemoryLockProvider, LockError, LockProvider, SchedulerLock, scheduler_lock};
use tokio::sync::{Notify, oneshot};

/// Each test uses its own provider, so tests running in parallel never share a lock.
static LOCKS: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "returns-its-output", lock_at_most_for = "10s", provider = &*LOCKS)]
async fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[tokio::test]
async fn body_runs_and_returns_its_output() {
    assert_eq!(add(2, 3).await.ok(), Some(Some(5)));
    assert!(!LOCKS.is_locked("returns-its-output"));
}

static HELD: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);
static HELD_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Signals `started`, then holds its lock until `release` fires.
#[scheduler_lock(name = "held-{job}", lock_at_most_for = "10s", provider = HELD)]
async fn hold(job: &'static str, started: Arc<Notify>, release: oneshot::Receiver<()>) -> usize {
    HELD_RUNS.fetch_add(1, Ordering::SeqCst);
    started.notify_one();
    let _ = release.await;
    job.len()
}

#[tokio::test]
async fn second_call_skips_while_first_holds() -> Result<(), LockError> {
    let started = Arc::new(Notify::new());
    let (release, held) = oneshot::channel();
    let first = tokio::spawn(hold("a", started.clone(), held));
    started.notified().await;

    let (_unused, never) = oneshot::channel();
    assert_eq!(hold("a", Arc::new(Notify::new()), never).await?, None);
    assert_eq!(HELD_RUNS.load(Ordering::SeqCst), 1, "the skipped body ran");

    let _ = release.send(());
    assert_eq!(first.await.expect("the holder panicked")?, Some(1));
    Ok(())
}

static PER_REGION: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "report-{region}:{id:>04}", lock_at_most_for = "10s", provider = PER_REGION)]
async fn report(region: String, id: u32, started: Arc<Notify>, release: oneshot::Receiver<()>) {
    let lock = shedlock::current_lock().map(|lock| lock.name().to_owned());
    assert_eq!(lock, Some(format!("report-{region}:{id:04}")));
    started.notify_one();
    let _ = release.await;
}

#[tokio::test]
async fn placeholders_give_one_lock_per_argument() -> Result<(), LockError> {
    let started = Arc::new(Notify::new());
    let (release, held) = oneshot::channel();
    let eu = tokio::spawn(report("eu".into(), 7, started.clone(), held));
    started.notified().await;
    assert!(PER_REGION.is_locked("report-eu:0007"));

    let (_unused, never) = oneshot::channel();
    let same = report("eu".into(), 7, Arc::new(Notify::new()), never).await?;
    assert_eq!(same, None, "same arguments: excluded");

    let (done, free) = oneshot::channel();
    let _ = done.send(());
    let other = report("us".into(), 7, Arc::new(Notify::new()), free).await?;
    assert_eq!(other, Some(()), "other arguments: independent lock");

    let _ = release.send(());
    assert_eq!(eu.await.expect("the holder panicked")?, Some(()));
    Ok(())
}

struct Counter {
    locks: InMemoryLockProvider,
    count: u32,
}

impl Counter {
    #[scheduler_lock(name = "counter", lock_at_most_for = "10s", provider = self.locks.clone())]
    async fn increment(&mut self, by: u32) -> u32 {
        self.count += by;
        self.count
    }

    #[scheduler_lock(name = "counter-read", lock_at_most_for = "10s", provider = self.locks)]
    async fn read(&self) -> u32 {
        self.count
    }
}

#[tokio::test]
async fn mut_self_method_mutates() -> Result<(), LockError> {
    let mut counter = Counter {
        locks: InMemoryLockProvider::new(),
        count: 0,
    };
    assert_eq!(counter.increment(2).await?, Some(2));
    assert_eq!(counter.increment(3).await?, Some(5));
    assert_eq!(counter.read().await?, Some(5));
    Ok(())
}

static FALLIBLE: LazyLock<Arc<dyn LockProvider>> =
    LazyLock::new(|| Arc::new(InMemoryLockProvider::new()));

#[scheduler_lock(name = "parse", lock_at_most_for = "10s", provider = FALLIBLE)]
async fn parse(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty".to_owned());
    }
    let number: u32 = text.parse().map_err(|e| format!("{e}"))?;
    Ok(number * 2)
}

#[tokio::test]
async fn question_mark_and_return_come_back_inside_some() -> Result<(), LockError> {
    assert_eq!(parse("21").await?, Some(Ok(42)));
    assert_eq!(parse("").await?, Some(Err("empty".to_owned())));
    assert!(matches!(parse("x").await?, Some(Err(e)) if e.contains("invalid digit")));
    Ok(())
}

static ASSERTED: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "asserted-{tenant}", lock_at_most_for = "10s", provider = ASSERTED)]
async fn asserted(tenant: u8) -> Option<String> {
    shedlock::assert_locked();
    tokio::task::yield_now().await;
    shedlock::current_lock().map(|lock| lock.name().to_owned())
}

#[tokio::test]
async fn body_sees_its_formatted_lock() -> Result<(), LockError> {
    assert_eq!(asserted(3).await?, Some(Some("asserted-3".to_owned())));
    Ok(())
}

static REENTRANT: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "reentrant", lock_at_most_for = "10s", provider = REENTRANT)]
async fn outer() -> Result<Option<u8>, LockError> {
    inner().await
}

#[scheduler_lock(name = "reentrant", lock_at_most_for = "10s", provider = REENTRANT)]
async fn inner() -> u8 {
    7
}

#[tokio::test]
async fn locked_fn_calling_one_of_the_same_name_runs_it() -> Result<(), LockError> {
    let inner_ran = outer().await?.transpose()?;
    assert_eq!(
        inner_ran,
        Some(Some(7)),
        "the inner call was skipped or failed"
    );
    Ok(())
}

static PANICKY: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

#[scheduler_lock(name = "panics", lock_at_most_for = "10s", provider = PANICKY)]
async fn panics(really: bool) -> u8 {
    tokio::task::yield_now().await;
    if really {
        panic!("the job failed");
    }
    1
}

#[tokio::test]
async fn panic_propagates_and_frees_the_lock() -> Result<(), LockError> {
    let joined = tokio::spawn(panics(true)).await;
    assert!(joined.is_err_and(|error| error.is_panic()));
    assert!(!PANICKY.is_locked("panics"));
    assert_eq!(panics(false).await?, Some(1));
    Ok(())
}

/// Installs the process-wide default once, whichever test comes first.
fn install_default() -> &'static InMemoryLockProvider {
    static DEFAULT: OnceLock<InMemoryLockProvider> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        let provider = InMemoryLockProvider::new();
        let installed = SchedulerLock::builder(provider.clone())
            .default_lock_at_most_for(Duration::from_secs(10))
            .install();
        assert!(installed.is_ok(), "{installed:?}");
        provider
    })
}

#[scheduler_lock(name = "uses-the-default")]
async fn uses_the_default() -> bool {
    shedlock::current_lock().is_some()
}

#[tokio::test]
async fn without_provider_uses_the_installed_default() -> Result<(), LockError> {
    let provider = install_default();
    assert_eq!(uses_the_default().await?, Some(true));
    assert!(!provider.is_locked("uses-the-default"));
    Ok(())
}
