//! What `#[cached]` and `#[cached_as]` emit alike: the function with its body
//! run as a closure by one runtime call, and the options both attributes take.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, ReturnType, Signature};

/// The function as written, its body replaced by `run(closure)`, where
/// `closure` is `|| -> Ret { body }`: the body keeps its `return`s and `?`s,
/// which now leave the closure with the function's own return type.
pub(crate) fn wrap_body(
    func: &ItemFn,
    run: impl FnOnce(TokenStream) -> TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let output = output(sig);
    let body = run(quote! { || -> #output #block });
    quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}

/// The return type (`()` only for a signature already reported).
pub(crate) fn output(sig: &Signature) -> TokenStream {
    match &sig.output {
        ReturnType::Type(_, ty) => quote! { #ty },
        ReturnType::Default => quote! { () },
    }
}

/// A timeout: an integer literal is seconds; any other expression must be a
/// `Duration`.
pub(crate) fn duration(expr: &Expr) -> TokenStream {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(secs),
            ..
        }) => quote_spanned! {secs.span()=> ::core::time::Duration::from_secs(#secs) },
        _ => quote_spanned! {expr.span()=> #expr },
    }
}

/// `.extra(&(<expr>))` on the options or key builder.
pub(crate) fn extra(expr: &Expr) -> TokenStream {
    quote_spanned! {expr.span()=> .extra(&(#expr)) }
}
