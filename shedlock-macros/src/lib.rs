//! `#[scheduler_lock]`: see the `shedlock` crate.
use proc_macro::TokenStream;

/// Placeholder while the attribute is written.
#[proc_macro_attribute]
pub fn scheduler_lock(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
