//! The attribute's arguments: `name = "..", lock_at_most_for = "..", provider = .., crate = ..`.

use std::time::Duration;

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Expr, Ident, LitStr, Path, Token};

mod values;

use values::{
    boolean, count, crate_path, duration, every, lock_at_most_for, misfire, mode, name, scope,
};

/// Every key the attribute accepts, as the "unknown key" error lists them.
/// A new key is a field of [`SchedulerLockArgs`], an arm in its `set`, and an entry here.
const KEYS: &[&str] = &[
    "name",
    "lock_at_most_for",
    "lock_at_least_for",
    "wait_for",
    "keep_alive",
    "cancel_on_lease_loss",
    "mode",
    "permits",
    "capacity",
    "scope",
    "every",
    "misfire",
    "provider",
    "crate",
];

/// The most permits (and the largest capacity) a lock can have: `shedlock_core::MAX_PERMITS`.
const MAX_PERMITS: u32 = 1_000_000;

/// The arguments of one `#[scheduler_lock(..)]`, each value checked.
///
/// Parsing reports every mistake it finds at once, as one combined error.
#[derive(Default)]
pub(crate) struct SchedulerLockArgs {
    /// `name = "report-{region}"`: required, never blank; read it with [`Self::name`].
    name: Option<LitStr>,
    /// `lock_at_most_for = "10m"`: how long a lease lasts at most; never zero.
    pub(crate) lock_at_most_for: Option<DurationArg>,
    /// `lock_at_least_for = "30s"`: how long a lease lasts at least; at most `lock_at_most_for`.
    pub(crate) lock_at_least_for: Option<DurationArg>,
    /// `wait_for = "5m"`: wait up to this long for a held lock instead of skipping.
    pub(crate) wait_for: Option<DurationArg>,
    /// `keep_alive = true`: extend the lease while the body runs.
    pub(crate) keep_alive: Option<bool>,
    /// `cancel_on_lease_loss = true`: drop the body when its lease is lost.
    pub(crate) cancel_on_lease_loss: Option<bool>,
    /// `mode = "shared"` or `"exclusive"` (the default).
    pub(crate) mode: Option<ModeArg>,
    /// `permits = 3`: a counted holder taking this many permits (shared mode).
    pub(crate) permits: Option<CountArg>,
    /// `capacity = 9`: the capacity used while the store holds none.
    pub(crate) capacity: Option<CountArg>,
    /// `scope = "tenant-{tenant}"`: run on the replica that owns this scope.
    pub(crate) scope: Option<LitStr>,
    /// `every = "5m"`: claim the interval's tick nearest to now; never zero.
    pub(crate) every: Option<DurationArg>,
    /// `misfire = "run_once"` (or `"skip"`, the default), with `every`.
    pub(crate) misfire: Option<MisfireArg>,
    /// `provider = <expr>`: the provider to use instead of the installed default.
    pub(crate) provider: Option<Expr>,
    /// `crate = path`: the path of the `shedlock` facade, when it is renamed.
    pub(crate) krate: Option<Path>,
}

/// `misfire = ".."`, with its literal.
pub(crate) struct MisfireArg {
    pub(crate) run_once: bool,
    literal: LitStr,
}

/// `mode = ".."`.
pub(crate) struct ModeArg {
    pub(crate) shared: bool,
}

/// A count key's value (`permits`, `capacity`), with its literal.
pub(crate) struct CountArg {
    pub(crate) value: u32,
    pub(crate) literal: syn::LitInt,
}

/// A duration key's value, parsed, with the literal it came from (for error spans).
pub(crate) struct DurationArg {
    pub(crate) value: Duration,
    pub(crate) literal: LitStr,
}

impl SchedulerLockArgs {
    /// The lock name's literal, or the "missing `name`" error (pointing at the attribute).
    pub(crate) fn name(&self) -> syn::Result<&LitStr> {
        self.name.as_ref().ok_or_else(|| {
            Error::new(
                Span::call_site(),
                "missing `name`: every lock needs a unique name, \
                 e.g. #[scheduler_lock(name = \"nightly-report\")]",
            )
        })
    }

    /// Stores the value of `key`, checked. A duplicate keeps the first value
    /// (and has been reported already).
    fn set(&mut self, key: &Ident, value: Expr) -> syn::Result<()> {
        match key.unraw().to_string().as_str() {
            "name" => set_once(&mut self.name, name(key, &value)?),
            "lock_at_most_for" => {
                set_once(&mut self.lock_at_most_for, lock_at_most_for(key, &value)?)
            }
            "lock_at_least_for" => set_once(&mut self.lock_at_least_for, duration(key, &value)?),
            "wait_for" => set_once(&mut self.wait_for, duration(key, &value)?),
            "keep_alive" => set_once(&mut self.keep_alive, boolean(key, &value)?),
            "cancel_on_lease_loss" => {
                set_once(&mut self.cancel_on_lease_loss, boolean(key, &value)?)
            }
            "mode" => set_once(&mut self.mode, mode(key, &value)?),
            "permits" => set_once(&mut self.permits, count(key, &value, 1)?),
            "capacity" => set_once(&mut self.capacity, count(key, &value, 0)?),
            "scope" => set_once(&mut self.scope, scope(key, &value)?),
            "every" => set_once(&mut self.every, every(key, &value)?),
            "misfire" => set_once(&mut self.misfire, misfire(key, &value)?),
            "provider" => set_once(&mut self.provider, value),
            "crate" => set_once(&mut self.krate, crate_path(&value)?),
            _ => return Err(unknown_key(key)),
        }
        Ok(())
    }

    /// Checks between keys, once every key has been read.
    fn check(&self, seen: &[String], errors: &mut Vec<Error>) {
        if !seen.iter().any(|key| key == "name") {
            errors.extend(self.name().err());
        }
        if let (Some(most), Some(least)) = (&self.lock_at_most_for, &self.lock_at_least_for)
            && least.value > most.value
        {
            errors.push(Error::new(
                least.literal.span(),
                format!(
                    "lock_at_least_for ({}) is longer than lock_at_most_for ({}): \
                     a lease cannot be kept longer than it lasts; \
                     lower lock_at_least_for or raise lock_at_most_for",
                    humantime::format_duration(least.value),
                    humantime::format_duration(most.value),
                ),
            ));
        }
    }
}

impl SchedulerLockArgs {
    /// Whether the lock is taken shared: a shared mode, or permits.
    fn is_shared(&self) -> bool {
        self.mode.as_ref().is_some_and(|mode| mode.shared) || self.permits.is_some()
    }

    /// Checks between `mode`, `permits` and `capacity`.
    fn check_kind(&self, errors: &mut Vec<Error>) {
        if let (Some(mode), Some(permits)) = (&self.mode, &self.permits)
            && !mode.shared
        {
            errors.push(Error::new(
                permits.literal.span(),
                "`permits` with `mode = \"exclusive\"`: an exclusive holder takes the whole \
                 lock; remove `permits`, or use `mode = \"shared\"` for a counted lock",
            ));
        }
        if let (Some(misfire), None) = (&self.misfire, &self.every) {
            errors.push(Error::new(
                misfire.literal.span(),
                "`misfire` without `every`: it says what a call of an interval schedule does \
                 about a tick no replica ran; add `every = \"..\"` (for the cron helper, \
                 use LockedJobs::catching_up)",
            ));
        }
        if let Some(every) = &self.every
            && self.is_shared()
        {
            errors.push(Error::new(
                every.literal.span(),
                "`every` with a shared lock: a tick is claimed by one exclusive holder; \
                 remove `mode`/`permits`, or `every`",
            ));
        }
        if let (Some(permits), Some(capacity)) = (&self.permits, &self.capacity)
            && permits.value > capacity.value
            && capacity.value > 0
        {
            errors.push(Error::new(
                permits.literal.span(),
                format!(
                    "`permits = {}` is more than `capacity = {}`: the lock could never be taken; \
                     lower permits or raise capacity",
                    permits.value, capacity.value
                ),
            ));
        }
    }
}

impl SchedulerLockArgs {
    /// Keys that mean nothing for a scoped job: its lease is the scope's,
    /// kept by the owner between ticks, and it runs on the owner alone.
    fn check_scope(&self, errors: &mut Vec<Error>) {
        let Some(scope) = &self.scope else { return };
        let mut clash = |key: &str, why: &str| {
            errors.push(Error::new(
                scope.span(),
                format!("`{key}` with `scope`: {why}; remove one of them"),
            ));
        };
        if self.keep_alive == Some(true) {
            clash(
                "keep_alive",
                "a scoped job's lease is its scope's, which its owner keeps alive in the background",
            );
        }
        if self.is_shared() {
            clash(
                "mode = \"shared\"",
                "a scoped job runs on the scope's owner alone, so it cannot share with other replicas",
            );
        }
        if self.capacity.is_some() {
            clash(
                "capacity",
                "a scoped job runs on the scope's owner alone, one run at a time",
            );
        }
        if self.every.is_some() {
            clash(
                "every",
                "a scoped job runs on the scope's owner without asking the store, so it \
                 claims no ticks there",
            );
        }
    }
}

impl Parse for SchedulerLockArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = SchedulerLockArgs::default();
        let mut errors = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            let key = parse_key(input)?;
            let key_name = key.unraw().to_string();
            if seen.contains(&key_name) {
                errors.push(Error::new(
                    key.span(),
                    format!("duplicate key `{key_name}`: give each key once"),
                ));
            }
            match parse_value(input, &key)? {
                Ok(value) => errors.extend(args.set(&key, value).err()),
                Err(error) => errors.push(error),
            }
            seen.push(key_name);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        args.check(&seen, &mut errors);
        args.check_kind(&mut errors);
        args.check_scope(&mut errors);
        match errors.into_iter().reduce(|mut all, error| {
            all.combine(error);
            all
        }) {
            Some(error) => Err(error),
            None => Ok(args),
        }
    }
}

/// Keeps the first value of a key; a duplicate has already been reported.
fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// `= value` after `key`. A missing value is the inner error: parsing goes on
/// at the next `,`; a value that does not parse as an expression stops it.
fn parse_value(input: ParseStream<'_>, key: &Ident) -> syn::Result<Result<Expr, Error>> {
    let key_name = key.unraw().to_string();
    if !input.peek(Token![=]) {
        if !KEYS.contains(&key_name.as_str()) {
            return Ok(Err(unknown_key(key)));
        }
        return Ok(Err(Error::new(
            key.span(),
            format!("expected `{key_name} = ...` (keys take a value after `=`)"),
        )));
    }
    let eq: Token![=] = input.parse()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Ok(Err(Error::new(
            eq.span,
            format!("expected a value after `{key_name} =`"),
        )));
    }
    input.parse().map(Ok)
}

/// A key: any identifier, including the keyword `crate`.
fn parse_key(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        return Err(input.error(
            "the attribute takes `key = value` pairs: write `name = \"...\"`, not just the name",
        ));
    }
    input.call(Ident::parse_any).map_err(|error| {
        Error::new(
            error.span(),
            "expected a key such as `name = \"...\"` or `lock_at_most_for = \"...\"`",
        )
    })
}

fn unknown_key(key: &Ident) -> Error {
    Error::new(
        key.span(),
        format!(
            "unknown key `{}`; expected one of: {}",
            key.unraw(),
            KEYS.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: proc_macro2::TokenStream) -> syn::Result<SchedulerLockArgs> {
        syn::parse2(tokens)
    }

    fn messages(tokens: proc_macro2::TokenStream) -> Vec<String> {
        match parse(tokens) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_listed_key_is_accepted() {
        for key in KEYS {
            let key = Ident::new(key, Span::call_site());
            let value = match key.to_string().as_str() {
                "provider" => quote::quote!(PROVIDER),
                "crate" => quote::quote!(renamed),
                "keep_alive" | "cancel_on_lease_loss" => quote::quote!(true),
                "mode" => quote::quote!("shared"),
                "misfire" => quote::quote!("run_once"),
                "permits" | "capacity" => quote::quote!(2),
                _ => quote::quote!("30s"),
            };
            let extra = match key.to_string().as_str() {
                "name" => quote::quote!(),
                // `misfire` goes with `every`.
                "misfire" => quote::quote!(, name = "job", every = "1m"),
                _ => quote::quote!(, name = "job"),
            };
            let result = parse(quote::quote!(#key = #value #extra));
            assert!(result.is_ok(), "{key}: {:?}", result.err());
        }
    }

    #[test]
    fn reads_all_keys() -> syn::Result<()> {
        let args = parse(quote::quote!(
            name = "report-{region}",
            lock_at_most_for = "10m",
            lock_at_least_for = "PT30S",
            wait_for = "5m",
            keep_alive = true,
            cancel_on_lease_loss = false,
            provider = self.provider,
            crate = ::renamed,
        ))?;
        assert_eq!(
            args.wait_for.as_ref().map(|d| d.value),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            (args.keep_alive, args.cancel_on_lease_loss),
            (Some(true), Some(false))
        );
        assert_eq!(args.name()?.value(), "report-{region}");
        assert_eq!(
            args.lock_at_most_for.map(|d| d.value),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            args.lock_at_least_for.map(|d| d.value),
            Some(Duration::from_secs(30))
        );
        assert!(args.provider.is_some());
        assert!(args.krate.is_some_and(|path| path.leading_colon.is_some()));
        Ok(())
    }

    #[test]
    fn reports_every_mistake_at_once() {
        let found = messages(quote::quote!(
            retries = "5s",
            lock_at_most_for = "0s",
            lock_at_most_for = "1m",
        ));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("unknown key `retries`; expected one of: name,"));
        assert!(found[1].starts_with("lock_at_most_for is zero"));
        assert!(found[2].starts_with("duplicate key `lock_at_most_for`"));
        assert!(found[3].starts_with("missing `name`"));
    }

    #[test]
    fn a_bad_name_is_not_also_missing() {
        let found = messages(quote::quote!(name = "  "));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("the lock name is empty"));
    }
}
