//! Signatures the attribute keeps: receivers, generics, `where`, `impl Trait`,
//! argument patterns, `?` and `return`, placeholders; and a `Send` future.

use std::fmt::Display;
use std::num::ParseIntError;
use std::sync::LazyLock;

use shedlock::{InMemoryLockProvider, LockError, scheduler_lock};

static LOCKS: LazyLock<InMemoryLockProvider> = LazyLock::new(InMemoryLockProvider::new);

fn assert_send<T: Send>(_: T) {}

struct Job {
    runs: u32,
}

impl Job {
    #[scheduler_lock(name = "by-ref", lock_at_most_for = "1m", provider = LOCKS)]
    async fn runs(&self) -> u32 {
        self.runs
    }

    #[scheduler_lock(name = "by-mut-ref", lock_at_most_for = "1m", provider = LOCKS)]
    async fn run(&mut self) {
        self.runs += 1;
    }

    /// Docs and other attributes stay.
    #[inline]
    #[scheduler_lock(name = "by-value-{self}", lock_at_most_for = "1m", provider = LOCKS)]
    pub(crate) async fn into_runs(self) -> u32 {
        self.runs
    }

    #[scheduler_lock(name = "returns-self", lock_at_most_for = "1m", provider = LOCKS)]
    async fn fresh() -> Self {
        Job { runs: 0 }
    }
}

impl Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job-{}", self.runs)
    }
}

#[scheduler_lock(name = "generic-{item}", lock_at_most_for = "1m", provider = LOCKS)]
async fn generic<'a, T, const N: usize>(item: &'a T, extra: [u8; N]) -> &'a T
where
    T: Display + Sync + ?Sized,
{
    let _ = extra;
    item
}

#[scheduler_lock(name = "impl-trait", lock_at_most_for = "1m", provider = LOCKS)]
async fn impl_trait(
    label: impl Display + Send,
    items: impl IntoIterator<Item = u8>,
) -> impl Display {
    let sum: u32 = items.into_iter().map(u32::from).sum();
    format!("{label}: {sum}")
}

#[scheduler_lock(name = "nested-impl", lock_at_most_for = "1m", provider = LOCKS)]
async fn nested_impl_trait(text: &str) -> Result<impl Display, ParseIntError> {
    let number: u32 = text.parse()?;
    Ok(number)
}

#[scheduler_lock(name = "patterns-{a}-{b}", lock_at_most_for = "1m", provider = LOCKS)]
async fn patterns((a, b): (u8, u8), mut total: u32, Job { runs }: Job) -> u32 {
    total += u32::from(a) + u32::from(b) + runs;
    total
}

// `?` with an error type known only from the signature, and early `return`s.
#[scheduler_lock(name = "question-mark", lock_at_most_for = "1m", provider = LOCKS)]
async fn question_mark(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty".into());
    }
    let parsed: Result<u32, &str> = text.parse().map_err(|_| "not a number");
    let number = parsed?;
    if number == 0 {
        return Ok(0);
    }
    Ok(number * 2)
}

#[scheduler_lock(name = "inferred-from-signature", lock_at_most_for = "1m", provider = LOCKS)]
async fn inferred(text: &str) -> Result<u32, ParseIntError> {
    Ok(text.trim().parse()?)
}

#[scheduler_lock(name = "unit-{n}", lock_at_most_for = "1m", provider = LOCKS)]
async fn early_unit_return(n: u8) {
    if n > 3 {
        return;
    }
    tokio::task::yield_now().await;
}

#[scheduler_lock(name = "{tenant}:{id:>04}:{{literal}}", lock_at_most_for = "1m", provider = LOCKS)]
async fn formatted(tenant: &str, id: u32) -> String {
    #![allow(clippy::useless_format)]
    shedlock::current_lock().map_or_else(String::new, |lock| lock.name().to_owned())
}

#[scheduler_lock(name = "only-{{escapes}}", lock_at_most_for = "1m", provider = LOCKS)]
async fn escapes_only() -> Option<String> {
    shedlock::current_lock().map(|lock| lock.name().to_owned())
}

// In a trait implementation: the trait declares the wrapped output.
trait Task {
    fn execute(&self) -> impl Future<Output = Result<Option<u32>, LockError>> + Send;
}

impl Task for Job {
    #[scheduler_lock(name = "trait-impl", lock_at_most_for = "1m", provider = LOCKS)]
    async fn execute(&self) -> u32 {
        self.runs
    }
}

// Values passed through `macro_rules!` fragments.
macro_rules! locked_job {
    ($function:ident, $name:expr, $lock_at_most_for:literal) => {
        #[scheduler_lock(name = $name, lock_at_most_for = $lock_at_most_for, provider = LOCKS)]
        async fn $function() -> &'static str {
            $name
        }
    };
}

locked_job!(from_macro, "from-macro", "1m");

fn main() -> Result<(), LockError> {
    let mut job = Job { runs: 1 };
    assert_send(job.runs());
    assert_send(job.run());
    assert_send(Job { runs: 0 }.into_runs());
    assert_send(Job::fresh());
    assert_send(generic("item", [1, 2]));
    assert_send(impl_trait("sum", vec![1, 2]));
    assert_send(nested_impl_trait("1"));
    assert_send(patterns((1, 2), 3, Job { runs: 4 }));
    assert_send(question_mark("1"));
    assert_send(inferred("1"));
    assert_send(early_unit_return(1));
    assert_send(formatted("acme", 7));
    assert_send(job.execute());
    assert_send(from_macro());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| LockError::InvalidConfiguration(e.to_string()))?;
    runtime.block_on(async {
        job.run().await?;
        assert_eq!(job.execute().await?, Some(2));
        assert_eq!(from_macro().await?, Some("from-macro"));
        assert_eq!(job.runs().await?, Some(2));
        assert_eq!(job.into_runs().await?, Some(2));
        assert_eq!(Job::fresh().await?.map(|job| job.runs), Some(0));
        assert_eq!(generic("x", [0; 3]).await?, Some("x"));
        assert_eq!(
            impl_trait("sum", [1, 2]).await?.map(|s| s.to_string()),
            Some("sum: 3".into())
        );
        let nested = nested_impl_trait("5")
            .await?
            .map(|r| r.map(|n| n.to_string()));
        assert_eq!(nested, Some(Ok("5".to_owned())));
        assert_eq!(patterns((1, 2), 3, Job { runs: 4 }).await?, Some(10));
        assert_eq!(question_mark("").await?, Some(Err("empty".to_owned())));
        assert_eq!(
            question_mark("x").await?,
            Some(Err("not a number".to_owned()))
        );
        assert_eq!(question_mark("0").await?, Some(Ok(0)));
        assert_eq!(question_mark("4").await?, Some(Ok(8)));
        assert_eq!(inferred(" 4 ").await?, Some(Ok(4)));
        assert!(inferred("x").await?.is_some_and(|r| r.is_err()));
        assert_eq!(early_unit_return(9).await?, Some(()));
        assert_eq!(
            formatted("acme", 7).await?.as_deref(),
            Some("acme:0007:{literal}")
        );
        assert_eq!(
            escapes_only().await?,
            Some(Some("only-{escapes}".to_owned()))
        );
        Ok(())
    })
}
