//! The value of one key of the attribute, checked: a string, a duration, a
//! count, a choice of two words, a path.

use std::time::Duration;

use syn::{Error, Expr, ExprLit, Ident, Lit, LitStr, Path};

use super::{CountArg, DurationArg, MAX_PERMITS, MisfireArg, ModeArg};
use crate::duration::parse_duration;

/// A string literal, looking through the invisible groups of `macro_rules!` fragments.
pub(super) fn string_literal<'a>(
    key: &Ident,
    value: &'a Expr,
    example: &str,
) -> syn::Result<&'a LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            attrs,
        }) if attrs.is_empty() => Ok(literal),
        Expr::Group(group) => string_literal(key, &group.expr, example),
        _ => Err(Error::new_spanned(
            value,
            format!("`{key}` takes a string literal, e.g. `{key} = {example}`"),
        )),
    }
}

pub(super) fn name(key: &Ident, value: &Expr) -> syn::Result<LitStr> {
    let literal = string_literal(key, value, "\"nightly-report\"")?;
    if literal.value().trim().is_empty() {
        return Err(Error::new(
            literal.span(),
            "the lock name is empty: give every job a unique, non-blank name, \
             e.g. name = \"nightly-report\"",
        ));
    }
    Ok(literal.clone())
}

pub(super) fn scope(key: &Ident, value: &Expr) -> syn::Result<LitStr> {
    let literal = string_literal(key, value, "\"tenant-{tenant}\"")?;
    if literal.value().trim().is_empty() {
        return Err(Error::new(
            literal.span(),
            "the scope is empty: name the scope the job belongs to, \
             e.g. scope = \"tenant-{tenant}\"",
        ));
    }
    Ok(literal.clone())
}

pub(super) fn duration(key: &Ident, value: &Expr) -> syn::Result<DurationArg> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Int(number),
        ..
    }) = value
    {
        return Err(Error::new(
            number.span(),
            format!(
                "`{key}` needs a unit: write a duration string, e.g. `{key} = \"{}s\"`",
                number.base10_digits()
            ),
        ));
    }
    let literal = string_literal(key, value, "\"30s\"")?;
    let value = parse_duration(&literal.value())
        .map_err(|message| Error::new(literal.span(), format!("`{key}`: {message}")))?;
    Ok(DurationArg {
        value,
        literal: literal.clone(),
    })
}

pub(super) fn boolean(key: &Ident, value: &Expr) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Ok(flag.value),
        other => Err(Error::new_spanned(
            other,
            format!("`{key}` takes `true` or `false`, e.g. `{key} = true`"),
        )),
    }
}

pub(super) fn lock_at_most_for(key: &Ident, value: &Expr) -> syn::Result<DurationArg> {
    let duration = duration(key, value)?;
    if duration.value.is_zero() {
        return Err(Error::new(
            duration.literal.span(),
            "lock_at_most_for is zero: a lease must last longer than the job normally runs, \
             e.g. lock_at_most_for = \"10m\"",
        ));
    }
    Ok(duration)
}

pub(super) fn every(key: &Ident, value: &Expr) -> syn::Result<DurationArg> {
    let duration = duration(key, value)?;
    if duration.value < Duration::from_millis(1) {
        return Err(Error::new(
            duration.literal.span(),
            "`every` is shorter than a millisecond: ticks are kept to the millisecond, \
             e.g. every = \"5m\"",
        ));
    }
    Ok(duration)
}

pub(super) fn misfire(key: &Ident, value: &Expr) -> syn::Result<MisfireArg> {
    let (run_once, literal) = choice(key, value, [("skip", false), ("run_once", true)])?;
    Ok(MisfireArg {
        run_once,
        literal: literal.clone(),
    })
}

pub(super) fn mode(key: &Ident, value: &Expr) -> syn::Result<ModeArg> {
    let (shared, _) = choice(key, value, [("shared", true), ("exclusive", false)])?;
    Ok(ModeArg { shared })
}

/// A key whose value is one of two strings, each meaning `true` or `false`:
/// that meaning, and the literal.
pub(super) fn choice<'a>(
    key: &Ident,
    value: &'a Expr,
    [(first, is_first), (second, is_second)]: [(&str, bool); 2],
) -> syn::Result<(bool, &'a LitStr)> {
    let example = if is_first { first } else { second };
    let literal = string_literal(key, value, &format!("\"{example}\""))?;
    match literal.value().as_str() {
        text if text == first => Ok((is_first, literal)),
        text if text == second => Ok((is_second, literal)),
        other => Err(Error::new(
            literal.span(),
            format!("unknown {key} \"{other}\"; expected \"{first}\" or \"{second}\""),
        )),
    }
}

/// A whole number from `min` to [`MAX_PERMITS`].
pub(super) fn count(key: &Ident, value: &Expr, min: u32) -> syn::Result<CountArg> {
    let literal = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(literal),
            attrs,
        }) if attrs.is_empty() && literal.suffix().is_empty() => literal,
        Expr::Group(group) => return count(key, &group.expr, min),
        _ => {
            return Err(Error::new_spanned(
                value,
                format!("`{key}` takes a whole number, e.g. `{key} = 3`"),
            ));
        }
    };
    let number = literal.base10_parse::<u64>()?;
    if number < u64::from(min) {
        return Err(Error::new(
            literal.span(),
            format!(
                "`{key} = {number}`: a holder takes at least 1 permit; \
                 leave `permits` out for an ordinary lock"
            ),
        ));
    }
    let value = u32::try_from(number)
        .ok()
        .filter(|value| *value <= MAX_PERMITS)
        .ok_or_else(|| {
            Error::new(
                literal.span(),
                format!("`{key} = {number}` is more than the {MAX_PERMITS} a lock can have"),
            )
        })?;
    Ok(CountArg {
        value,
        literal: literal.clone(),
    })
}

/// `crate = my_shedlock`, `crate = ::renamed`, or the same as a string (`crate = "renamed"`).
pub(super) fn crate_path(value: &Expr) -> syn::Result<Path> {
    match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => Ok(path.path.clone()),
        Expr::Lit(ExprLit {
            lit: Lit::Str(literal),
            ..
        }) => literal.parse_with(Path::parse_mod_style),
        Expr::Group(group) => crate_path(&group.expr),
        _ => Err(Error::new_spanned(
            value,
            "`crate` takes the path of the shedlock crate, e.g. `crate = my_shedlock`",
        )),
    }
}
