//! What `#[cached]` and `#[cached_as]` emit alike: the function with its body
//! run by one runtime call (a closure for a blocking function, a future awaited
//! for an `async fn`), and the options both attributes take.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, ReturnType, Signature};

/// Whether the function is blocking or `async`: what its body becomes, which
/// runtime function runs it, and what its module's invalidation returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Blocking,
    Async,
}

impl Mode {
    pub(crate) fn of(sig: &Signature) -> Mode {
        match sig.asyncness {
            Some(_) => Mode::Async,
            None => Mode::Blocking,
        }
    }

    /// The runtime function `name` of this mode: `name`, or `name_async`.
    pub(crate) fn runtime(self, name: &str) -> Ident {
        match self {
            Mode::Blocking => Ident::new(name, Span::call_site()),
            Mode::Async => Ident::new(&format!("{name}_async"), Span::call_site()),
        }
    }

    /// What completes the runtime's call: nothing, or `.await`.
    pub(crate) fn wait(self) -> TokenStream {
        match self {
            Mode::Blocking => quote! {},
            Mode::Async => quote! { .await },
        }
    }

    /// The return type of a module's invalidation: the result, or a future of
    /// it that borrows nothing.
    pub(crate) fn invalidation_output(self) -> TokenStream {
        let result = quote! { ::cacheops::Result<()> };
        match self {
            Mode::Blocking => result,
            Mode::Async => quote! {
                impl ::core::future::Future<Output = #result> + ::core::marker::Send + use<>
            },
        }
    }
}

/// The function as written, its body replaced by `run(body, mode)`, where
/// `body` is `|| -> Ret { block }` for a blocking function and, for an `async
/// fn`, the future `async { block }` typed as having output `Ret`: either way
/// the body keeps its `return`s and `?`s, which leave it with the function's
/// own return type. `capture` is `move` or nothing.
pub(crate) fn wrap_body(
    func: &ItemFn,
    capture: TokenStream,
    run: impl FnOnce(TokenStream, Mode) -> TokenStream,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let output = output(sig);
    let mode = Mode::of(sig);
    let body = match mode {
        Mode::Blocking => quote! { #capture || -> #output #block },
        Mode::Async => quote! {
            ::cacheops::__private::async_body::<#output, _>(async #capture #block)
        },
    };
    let body = run(body, mode);
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
