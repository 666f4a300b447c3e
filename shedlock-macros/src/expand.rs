//! Code generation: the function `#[scheduler_lock]` turns an `async fn` into.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    AttrStyle, Error, GenericArgument, Ident, Item, ItemFn, LitStr, Path, PathArguments,
    ReturnType, Signature, Token, TraitItemFn, Type, TypeInfer, parse_quote,
};

use crate::args::{DurationArg, SchedulerLockArgs};

/// Expands `#[scheduler_lock(args)] item`.
///
/// On a mistake, emits `item` unchanged beside the errors, so that the rest of
/// the crate still type-checks and IDEs keep working (as `#[tokio::main]` does).
pub(crate) fn scheduler_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    let expanded = match (
        syn::parse2::<SchedulerLockArgs>(args),
        parse_function(item.clone()),
    ) {
        (Ok(args), Ok(function)) => expand(&args, function),
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            Err(error)
        }
    };
    expanded.unwrap_or_else(|error| {
        let mut tokens = item;
        tokens.extend(error.into_compile_error());
        tokens
    })
}

/// The item as an `async fn` with a body, or why it cannot be locked.
fn parse_function(item: TokenStream) -> syn::Result<ItemFn> {
    let function = match syn::parse2::<Item>(item.clone())? {
        Item::Fn(function) => function,
        other => return Err(not_a_function(&other, item)),
    };
    let sig = &function.sig;
    let mut errors = Vec::new();
    if let Some(constness) = &sig.constness {
        errors.push(Error::new(
            constness.span,
            "#[scheduler_lock] cannot go on a `const fn`: remove `const`",
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(Error::new(
            sig.fn_token.span,
            "#[scheduler_lock] goes on an `async fn`: the lock is taken with `.await`, \
             so add `async` before `fn`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "#[scheduler_lock] cannot go on a variadic function",
        ));
    }
    match errors.into_iter().reduce(|mut all, error| {
        all.combine(error);
        all
    }) {
        Some(error) => Err(error),
        None => Ok(function),
    }
}

/// The error for an item that is not a function with a body, at its keyword.
fn not_a_function(item: &Item, tokens: TokenStream) -> Error {
    if let Ok(function) = syn::parse2::<TraitItemFn>(tokens.clone())
        && let Some(semi) = function.semi_token
    {
        return Error::new(
            semi.span,
            "#[scheduler_lock] needs the function's body: put it on the implementation, \
             not on a declaration without a body",
        );
    }
    let span = match item {
        Item::Const(item) => item.const_token.span,
        Item::Enum(item) => item.enum_token.span,
        Item::ExternCrate(item) => item.extern_token.span,
        Item::ForeignMod(item) => item.abi.extern_token.span,
        Item::Impl(item) => item.impl_token.span,
        Item::Macro(item) => item.mac.path.span(),
        Item::Mod(item) => item.mod_token.span,
        Item::Static(item) => item.static_token.span,
        Item::Struct(item) => item.struct_token.span,
        Item::Trait(item) => item.trait_token.span,
        Item::TraitAlias(item) => item.trait_token.span,
        Item::Type(item) => item.type_token.span,
        Item::Union(item) => item.union_token.span,
        Item::Use(item) => item.use_token.span,
        _ => tokens
            .into_iter()
            .next()
            .map_or_else(Span::call_site, |token| token.span()),
    };
    Error::new(
        span,
        "#[scheduler_lock] goes on an `async fn`, e.g. \
         #[scheduler_lock(name = \"nightly-report\")] async fn nightly_report() { .. }",
    )
}

/// The locked function: same attributes, visibility, name, generics and
/// arguments; the output wrapped in `Result<Option<_>, LockError>`; the body
/// run by the executor under the lock.
fn expand(args: &SchedulerLockArgs, function: ItemFn) -> syn::Result<TokenStream> {
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::shedlock));
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    // syn keeps a body's inner attributes (`#![allow(..)]`) with the outer ones.
    let (outer_attrs, inner_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer));

    let fake_return = fake_return(&sig);
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, output) => quote!(#output),
    };
    sig.output = parse_quote! {
        -> ::core::result::Result<::core::option::Option<#output>, #krate::LockError>
    };

    // Mixed-site names: the user's body cannot see (or shadow) them.
    let name_var = Ident::new("__shedlock_name", Span::mixed_site());
    let options_var = Ident::new("__shedlock_options", Span::mixed_site());
    let provider_var = Ident::new("__shedlock_provider", Span::mixed_site());
    let body_var = Ident::new("__shedlock_body", Span::mixed_site());
    let output_var = Ident::new("__shedlock_output", Span::mixed_site());

    let name_literal = args.name()?;
    let name = lock_name(name_literal, &krate);
    let name_template = name_template(name_literal);
    let lock_at_most_for = duration(args.lock_at_most_for.as_ref());
    let lock_at_least_for = duration(args.lock_at_least_for.as_ref());
    let wait_for = duration(args.wait_for.as_ref());
    let every = duration(args.every.as_ref());
    let misfire_run_once = args
        .misfire
        .as_ref()
        .is_some_and(|misfire| misfire.run_once);
    let keep_alive = args.keep_alive.unwrap_or(false);
    let cancel_on_lease_loss = args.cancel_on_lease_loss.unwrap_or(false);
    let shared = args.mode.as_ref().is_some_and(|mode| mode.shared);
    let permits = option_u32(args.permits.as_ref().map(|permits| permits.value));
    let capacity = option_u32(args.capacity.as_ref().map(|capacity| capacity.value));
    let scope_var = Ident::new("__shedlock_scope", Span::mixed_site());
    // The choices are data: one call, whichever the provider and the scope.
    let (scope_let, scope_arg) = match &args.scope {
        Some(scope) => {
            let scope = lock_name(scope, &krate);
            (
                quote! { let #scope_var = #scope; },
                quote! { ::core::option::Option::Some(::core::convert::Into::into(#scope_var)) },
            )
        }
        None => (quote!(), quote!(::core::option::Option::None)),
    };
    let (provider_let, provider_arg) = match &args.provider {
        Some(provider) => (
            quote! { let #provider_var = &(#provider); },
            quote_spanned! {provider.span()=>
                ::core::option::Option::Some({
                    use #krate::__private::ProviderRef as _;
                    #provider_var.shedlock_provider()
                })
            },
        ),
        None => (quote!(), quote!(::core::option::Option::None)),
    };

    Ok(quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            // The name first: `{arg}` placeholders borrow arguments the body then moves.
            let #name_var = #name;
            #scope_let
            // Every field is set today; the update keeps this compiling when options grow.
            #[allow(clippy::needless_update)]
            let #options_var = #krate::__private::AttributeOptions {
                lock_at_most_for: #lock_at_most_for,
                lock_at_least_for: #lock_at_least_for,
                wait_for: #wait_for,
                keep_alive: #keep_alive,
                cancel_on_lease_loss: #cancel_on_lease_loss,
                shared: #shared,
                permits: #permits,
                capacity: #capacity,
                every: #every,
                misfire_run_once: #misfire_run_once,
                name_template: #name_template,
                ..::core::default::Default::default()
            };
            #provider_let
            let #body_var = async move {
                let #output_var = async move {
                    #fake_return
                    #block
                }
                .await;
                {
                    // The run's outcome for the lock's history: `Err` is an error.
                    use #krate::__private::{AnyOutcome as _, ResultOutcome as _};
                    #krate::__private::note_outcome(
                        (&#krate::__private::OutcomeProbe(&#output_var)).shedlock_outcome(),
                    );
                }
                #output_var
            };
            #krate::__private::execute(
                #provider_arg,
                #name_var,
                #scope_arg,
                #options_var,
                #body_var,
            )
            .await
        }
    })
}

/// `Some(n)` or `None` as tokens.
fn option_u32(value: Option<u32>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// An unreachable `return` of the declared output type, first in the body's
/// async block, so `?` and `return` inside the body infer their types from
/// the signature (as `#[tracing::instrument]` does).
fn fake_return(sig: &Signature) -> TokenStream {
    let (output, span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, output) => {
            // `let _: impl Trait` is not allowed; `_` lets the body decide.
            let mut output = (**output).clone();
            erase_impl_trait(&mut output);
            (quote!(#output), output.span())
        }
    };
    let fake = Ident::new("__shedlock_fake_return", Span::mixed_site());
    quote_spanned! {span=>
        #[allow(unreachable_code, clippy::empty_loop)]
        if false {
            let #fake: #output = loop {};
            return #fake;
        }
    }
}

/// Replaces every `impl Trait` in `ty` with `_`.
fn erase_impl_trait(ty: &mut Type) {
    match ty {
        Type::ImplTrait(impl_trait) => {
            *ty = Type::Infer(TypeInfer {
                underscore_token: Token![_](impl_trait.impl_token.span),
            });
        }
        Type::Array(array) => erase_impl_trait(&mut array.elem),
        Type::Group(group) => erase_impl_trait(&mut group.elem),
        Type::Paren(paren) => erase_impl_trait(&mut paren.elem),
        Type::Ptr(ptr) => erase_impl_trait(&mut ptr.elem),
        Type::Reference(reference) => erase_impl_trait(&mut reference.elem),
        Type::Slice(slice) => erase_impl_trait(&mut slice.elem),
        Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(erase_impl_trait),
        Type::Path(path) => erase_impl_trait_in_path(&mut path.path),
        _ => {}
    }
}

fn erase_impl_trait_in_path(path: &mut Path) {
    for segment in &mut path.segments {
        if let PathArguments::AngleBracketed(arguments) = &mut segment.arguments {
            for argument in &mut arguments.args {
                if let GenericArgument::Type(ty) = argument {
                    erase_impl_trait(ty);
                }
            }
        }
    }
}

/// The lock name: without placeholders, the literal, made a shared string
/// once per function (a static, so a call allocates nothing for it);
/// otherwise `format!` of it, whose implicit arguments capture the function's
/// arguments (checked by the compiler).
fn lock_name(literal: &LitStr, krate: &Path) -> TokenStream {
    match without_placeholders(&literal.value()) {
        Some(name) => {
            let name = LitStr::new(&name, literal.span());
            let name_static = Ident::new("__SHEDLOCK_NAME", Span::mixed_site());
            quote! {{
                static #name_static: #krate::__private::StaticName =
                    #krate::__private::StaticName::new();
                #name_static.get(#name)
            }}
        }
        None => quote!(::std::format!(#literal)),
    }
}

/// `Some(literal)` when the name has placeholders: the template labels the
/// call's metrics, so a name per argument value makes no series of its own.
fn name_template(literal: &LitStr) -> TokenStream {
    match without_placeholders(&literal.value()) {
        Some(_) => quote!(::core::option::Option::None),
        None => quote!(::core::option::Option::Some(#literal)),
    }
}

/// `text` with `{{` and `}}` unescaped, or `None` when it has a placeholder
/// (or a lone brace, which `format!` then reports).
fn without_placeholders(text: &str) -> Option<String> {
    let mut unescaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '}' if chars.peek() == Some(&c) => {
                chars.next();
                unescaped.push(c);
            }
            '{' | '}' => return None,
            c => unescaped.push(c),
        }
    }
    Some(unescaped)
}

fn duration(arg: Option<&DurationArg>) -> TokenStream {
    match arg {
        Some(arg) => {
            let secs = arg.value.as_secs();
            let nanos = arg.value.subsec_nanos();
            quote_spanned! {arg.literal.span()=>
                ::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos))
            }
        }
        None => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_placeholders_stay_static() {
        assert_eq!(without_placeholders("report"), Some("report".to_owned()));
        assert_eq!(without_placeholders("a{{b}}c"), Some("a{b}c".to_owned()));
        assert_eq!(without_placeholders("report-{region}"), None);
        assert_eq!(without_placeholders("{{{x}}}"), None);
        assert_eq!(without_placeholders("a}b"), None);
    }

    #[test]
    fn erases_nested_impl_trait() {
        let mut ty: Type = parse_quote!(Result<(Vec<impl Send>, &impl Sync), [impl Copy; 2]>);
        erase_impl_trait(&mut ty);
        assert_eq!(
            quote!(#ty).to_string(),
            quote!(Result<(Vec<_>, &_), [_; 2]>).to_string()
        );
    }
}
