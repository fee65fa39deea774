//! What a macro with errors expands to: the errors, plus the item as written (or
//! a stub of what it would add), so that one mistake is one error and not also
//! an error at every use of the item (thiserror's `fallback.rs`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{DeriveInput, ItemFn};

use crate::expand::Mode;
use crate::signature::{self, Rules};

/// A function attribute on something else: the error and the item unchanged.
pub(crate) fn not_a_function(rules: &Rules, item: TokenStream) -> TokenStream {
    let message = format!("{} goes on a function", rules.name);
    let error = syn::Error::new(Span::call_site(), message).to_compile_error();
    quote! { #error #item }
}

/// The errors, the function unchanged and its module with stubbed bodies (so
/// that calls of `key`/`invalidate` add no errors), except on a method, whose
/// `impl` block cannot hold a module.
pub(crate) fn function(
    errors: &syn::Error,
    func: &ItemFn,
    module: impl FnOnce() -> TokenStream,
) -> TokenStream {
    let error = errors.to_compile_error();
    // Stubbed bodies use none of the arguments.
    let module = (!signature::is_method(func)).then(|| {
        let module = module();
        quote! { #[allow(unused_variables, unreachable_code)] #module }
    });
    quote! { #error #func #module }
}

/// The body of a stubbed function of the module: for an async function's
/// invalidation, a future of its result.
pub(crate) fn stub_body(rules: &Rules, mode: Mode) -> TokenStream {
    let message = format!("{} reported an error", rules.name);
    let body = quote! { ::core::unimplemented!(#message) };
    match mode {
        Mode::Blocking => body,
        Mode::Async => quote! { ::core::future::ready::<::cacheops::Result<()>>(#body) },
    }
}

/// The errors and an empty `Cacheable` impl, so that uses of the model's
/// `INFO` compile; none for a generic model, which the impl could not name.
pub(crate) fn cacheable(errors: &syn::Error, input: &DeriveInput) -> TokenStream {
    let error = errors.to_compile_error();
    if !input.generics.params.is_empty() {
        return error;
    }
    let ident = &input.ident;
    quote! {
        #error
        impl ::cacheops::Cacheable for #ident {
            const INFO: &'static ::cacheops::ModelInfo = &::cacheops::ModelInfo {
                label: "", table: "", primary_key: &[], columns: &[], equality: &[], sql_types: &[], profile: None,
            };
        }
    }
}
