//! What `#[scheduler_lock]` expands to. Not a public API: it changes without notice.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::executor::{Taking, run_labelled};
use crate::metrics::{Attempt, LockLabel};
use crate::scopes::Scoped;
use crate::{ExecutionOptions, LockConfiguration, LockError, LockProvider, SchedulerLock};

/// A lock name without placeholders, made a shared string at the first call
/// of its function and reused by every later call.
#[derive(Debug)]
pub struct StaticName(OnceLock<Arc<str>>);

impl StaticName {
    /// Not made yet.
    pub const fn new() -> Self {
        StaticName(OnceLock::new())
    }

    /// The shared `name` (always the same literal for one static).
    pub fn get(&'static self, name: &'static str) -> Arc<str> {
        self.0.get_or_init(|| Arc::from(name)).clone()
    }
}

impl Default for StaticName {
    fn default() -> Self {
        Self::new()
    }
}

/// The attribute's keys other than `name` and `provider`, as the macro saw them.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttributeOptions {
    /// `lock_at_most_for`, when the attribute sets it.
    pub lock_at_most_for: Option<Duration>,
    /// `lock_at_least_for`, when the attribute sets it.
    pub lock_at_least_for: Option<Duration>,
    /// `wait_for`, when the attribute sets it.
    pub wait_for: Option<Duration>,
    /// `keep_alive = true`.
    pub keep_alive: bool,
    /// `cancel_on_lease_loss = true`.
    pub cancel_on_lease_loss: bool,
    /// `mode = "shared"`.
    pub shared: bool,
    /// `permits = k` (shared mode with k permits).
    pub permits: Option<u32>,
    /// `capacity = n`.
    pub capacity: Option<u32>,
    /// `every = ".."`: the call claims the interval's tick nearest to now.
    pub every: Option<Duration>,
    /// `misfire = "run_once"` (with `every`): a call nearer the next tick
    /// than the last one runs for the last one if no replica claimed it.
    pub misfire_run_once: bool,
    /// The `name` literal when it has `{arg}` placeholders: the `lock` label
    /// of the call's metrics, so their number stays bounded.
    pub name_template: Option<&'static str>,
}

impl AttributeOptions {
    fn execution(self) -> ExecutionOptions {
        let options = ExecutionOptions::new()
            .keep_alive(self.keep_alive)
            .cancel_on_lease_loss(self.cancel_on_lease_loss);
        match self.wait_for {
            Some(wait_for) => options.wait_for(wait_for),
            None => options,
        }
    }

    fn configuration(
        self,
        name: Arc<str>,
        installed: Option<&SchedulerLock>,
    ) -> Result<LockConfiguration, LockError> {
        let lock_at_most_for = self
            .lock_at_most_for
            .or_else(|| installed.map(SchedulerLock::default_lock_at_most_for))
            .ok_or_else(|| {
                LockError::InvalidConfiguration(format!(
                    "lock '{name}' has no lock_at_most_for: set it in \
                     #[scheduler_lock(lock_at_most_for = \"..\")] or install a default with \
                     SchedulerLock::builder(..).default_lock_at_most_for(..).install()"
                ))
            })?;
        let lock_at_least_for = self
            .lock_at_least_for
            .or_else(|| installed.map(SchedulerLock::default_lock_at_least_for))
            .unwrap_or(Duration::ZERO);
        let config = LockConfiguration::new(name, lock_at_most_for, lock_at_least_for)?;
        let config = match (self.permits, self.shared) {
            (Some(permits), _) => config.with_permits(permits)?,
            (None, true) => config.shared(),
            (None, false) => config,
        };
        match self.capacity {
            Some(capacity) => config.with_capacity(capacity),
            None => Ok(config),
        }
    }
}

impl AttributeOptions {
    /// The call's configuration, with defaults from the installed
    /// `SchedulerLock`; refused (and counted so) when it is not valid.
    fn configured(self, name: Arc<str>) -> Result<LockConfiguration, LockError> {
        self.configuration(name.clone(), SchedulerLock::installed())
            .map_err(|err| refused(&name, self, err))
    }
}

/// `err` for a call refused before it tried its lock (no provider, an
/// invalid configuration): counted as an attempt that failed, as the run
/// pipeline counts its own failures, so dashboards see every call.
fn refused(name: &Arc<str>, options: AttributeOptions, err: LockError) -> LockError {
    Attempt::start(&LockLabel::of_name(name, options.name_template)).failed(&err);
    if matches!(err, LockError::NotConfigured) {
        not_configured_once(options.name_template.unwrap_or(name));
    }
    err
}

/// Logs at `error`, once per lock name (its template), that a locked call
/// found no provider: a job that never runs must not go unseen, nor fill the
/// log at every tick.
fn not_configured_once(name: &str) {
    /// Names logged already; past this many, no more are remembered or logged.
    const MOST: usize = 1024;
    static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut logged = LOGGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if logged.len() >= MOST || logged.iter().any(|logged| logged == name) {
        return;
    }
    logged.push(name.to_owned());
    tracing::error!(
        lock = %name,
        "#[scheduler_lock] function called with no provider: install one at startup with \
         SchedulerLock::builder(provider).install(), or give the attribute `provider = ..`; \
         the job does not run until then"
    );
}

/// What a probe of a `#[scheduler_lock]` call found (see [`probe_provider`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderProbe {
    /// The call takes its lock from the installed default provider.
    Default,
    /// The call names its own provider (`provider = ..`).
    Own,
    /// The call was not reached (the future awaited something else first,
    /// or panicked): nothing is known.
    Unknown,
}

thread_local! {
    /// Set while [`probe_provider`] polls a call: `Some(Unknown)` armed,
    /// then what the call's lock step found.
    static PROBE: std::cell::Cell<Option<ProviderProbe>> = const { std::cell::Cell::new(None) };
}

/// Whether the call `make` makes (a `#[scheduler_lock]` function's, or a
/// closure's calling one) takes its lock from the installed default
/// provider or names its own. The future is polled once, on this thread:
/// the call's lock step records which provider it would use and stays
/// pending, so the function's body never runs and no lock is taken; code of
/// a closure before the call runs, code after it does not. The future is
/// then dropped.
pub fn probe_provider<F: Future>(make: impl FnOnce() -> F) -> ProviderProbe {
    PROBE.with(|probe| probe.set(Some(ProviderProbe::Unknown)));
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let future = std::pin::pin!(make());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = future.poll(&mut context);
    }));
    let found = PROBE.with(|probe| probe.take());
    match (polled, found) {
        (Ok(()), Some(found)) => found,
        _ => ProviderProbe::Unknown,
    }
}

/// When a probe is armed on this thread: records `found` and gives a
/// future that never ends (the caller's lock step goes no further).
async fn probed(found: ProviderProbe) {
    let armed = PROBE.with(|probe| {
        let armed = probe.get().is_some();
        if armed {
            probe.set(Some(found));
        }
        armed
    });
    if armed {
        std::future::pending::<()>().await;
    }
}

/// Runs `task` under the lock `name`: the one call `#[scheduler_lock]`
/// expands to, its choices given as data.
///
/// `provider`: the attribute's `provider = ..`, or `None` for the installed
/// default provider. `scope`: the attribute's `scope = ".."`, to run as a job
/// of that scope on the replica that owns it, or `None` for a lease of the
/// call's own. Defaults for lease times come from the installed
/// `SchedulerLock`, if any, whichever the provider.
pub async fn execute<F: Future>(
    provider: Option<&dyn LockProvider>,
    name: impl Into<Arc<str>>,
    scope: Option<Arc<str>>,
    options: AttributeOptions,
    task: F,
) -> Result<Option<F::Output>, LockError> {
    probed(match provider {
        Some(_) => ProviderProbe::Own,
        None => ProviderProbe::Default,
    })
    .await;
    let name = name.into();
    let provider = match provider {
        Some(provider) => provider,
        None => match SchedulerLock::installed() {
            Some(installed) => &**installed.provider(),
            None => return Err(refused(&name, options, LockError::NotConfigured)),
        },
    };
    let config = options.configured(name)?;
    let label = LockLabel::new(&config, options.name_template);
    // `every`: the interval's tick nearest to now; else a scheduler's
    // (`run_for_tick`), if the call runs for one.
    // The clock is read only for `every` (no cost on other calls).
    let every = options.every.map(|every| {
        let now = SystemTime::now();
        (crate::ticks::nearest_tick(every, now), every, now)
    });
    // A tick is claimed by an exclusive holder: shared calls of a scheduled
    // run take their permits as usual (`every` with a shared mode does not compile).
    let tick = every.map(|(tick, ..)| tick).or_else(|| {
        crate::ticks::scheduled_tick().filter(|_| config.mode() == crate::LockMode::Exclusive)
    });
    let config = match tick {
        Some(tick) => config.for_tick(tick),
        None => config,
    };
    let taking = match (scope, every) {
        (Some(scope), _) => Taking::Scope(Scoped {
            settings: SchedulerLock::scope_settings(),
            scope,
        }),
        // `misfire = "run_once"`: a call nearer the next tick than the last
        // one takes the last one if no replica claimed it (a catch-up).
        (None, Some((nearest, every, now))) if options.misfire_run_once => {
            let last = crate::ticks::last_tick(every, now);
            if last < nearest {
                Taking::CatchingUp(config.clone().for_tick(last))
            } else {
                Taking::Lease
            }
        }
        (None, _) => Taking::Lease,
    };
    let run = run_labelled(provider, &config, label, taking, options.execution(), task);
    match every {
        Some((tick, every, _)) => {
            crate::run_for_tick(tick, crate::ticks::missed_every(every), run).await
        }
        None => run.await,
    }
}

/// Lets `provider = <expr>` accept a provider, a reference to one, or an
/// `Arc` of one: method-call auto-dereferencing finds the provider.
pub trait ProviderRef: LockProvider {
    /// The provider itself.
    fn shedlock_provider(&self) -> &Self {
        self
    }
}

impl<P: LockProvider + ?Sized> ProviderRef for P {}

pub use crate::runs::{AnyOutcome, OutcomeProbe, ResultOutcome, note_outcome};
