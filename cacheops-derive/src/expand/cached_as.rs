//! `#[cached_as]`: the function run through `__private::prepare(..).run(..)`
//! (an `async fn` through `.run_async(..).await`), and a module of the same name
//! with `key(args)`, `invalidate(args)` and `invalidate_using(handle, args)`
//! (the two invalidations async for an `async fn`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType, Type};

use super::wrap::{self, wrap_body, Mode};
use crate::attr::cached_as::{CachedAsAttr, Sample};
use crate::ctxt::Errors;
use crate::fallback;
use crate::signature::{Param, Rules, CACHED_AS};
use crate::valid;

impl super::FunctionAttr for CachedAsAttr {
    const RULES: Rules = CACHED_AS;

    fn read(tokens: TokenStream, errors: &mut Errors) -> Self {
        crate::attr::cached_as::read(tokens, errors)
    }

    fn check(&self, params: &[Param], errors: &mut Errors) {
        valid::cached_as(self, params, errors);
    }

    fn emit(&self, func: &ItemFn, params: &[Param]) -> TokenStream {
        let params = key_params(self, params);
        let wrapped = wrap_body(func, quote! {}, |body, mode| {
            run(func, self, &params, body, mode)
        });
        let key = key_expr(func, &params, &options(self), true);
        let bodies = Bodies::real(key, &params, Mode::of(&func.sig));
        let module = module(func, &params, &bodies);
        quote! { #wrapped #module }
    }

    fn stub_module(&self, func: &ItemFn, params: &[Param]) -> TokenStream {
        let params = key_params(self, params);
        let invalidate = fallback::stub_body(&CACHED_AS, Mode::of(&func.sig));
        let bodies = Bodies {
            key: fallback::stub_body(&CACHED_AS, Mode::Blocking),
            invalidate: invalidate.clone(),
            invalidate_using: invalidate,
        };
        module(func, &params, &bodies)
    }
}

/// The arguments that form the key: not skipped, not the handle, and not a
/// `&mut` (a connection, a buffer: state, not a key part).
fn key_params<'a>(attr: &CachedAsAttr, params: &'a [Param]) -> Vec<&'a Param> {
    let mutable = |ty: &Type| matches!(ty, Type::Reference(r) if r.mutability.is_some());
    params
        .iter()
        .filter(|p| !attr.leaves_out(&p.ident) && !mutable(&p.ty))
        .collect()
}

/// The new body: compile-time checks, then the handle, key and dependencies,
/// then the old body on a miss.
fn run(
    func: &ItemFn,
    attr: &CachedAsAttr,
    params: &[&Param],
    body: TokenStream,
    mode: Mode,
) -> TokenStream {
    let ret = wrap::output(&func.sig);
    let checks = checks(func, params);
    let options = options(attr);
    let key = key_expr(func, params, &quote! { __cacheops_options }, false);
    let handle = handle(attr);
    let samples = samples(attr);
    let fn_result = quote_spanned! { ret.span()=> <#ret as ::cacheops::__private::FnResult> };
    let (run, wait) = (mode.runtime("run"), mode.wait());
    quote! {
        #checks
        let __cacheops_options = #options;
        let __cacheops_call = ::cacheops::__private::prepare(
            #handle,
            || #key,
            |__cacheops_handle| {
                let __cacheops_samples = #samples;
                __cacheops_handle.resolve_samples(&__cacheops_samples)
            },
        );
        let __cacheops_call = match __cacheops_call {
            ::core::result::Result::Ok(call) => call,
            ::core::result::Result::Err(e) => return #fn_result::from_cache_error(e),
        };
        __cacheops_call.#run(&__cacheops_options, #body) #wait
    }
}

/// Each key argument serializable and the return type a fitting `Result`,
/// checked apart so that each error is spanned at the type and names the rule.
fn checks(func: &ItemFn, params: &[&Param]) -> TokenStream {
    let args = params.iter().map(|p| {
        let ty = &p.ty;
        quote_spanned! { ty.span()=> ::cacheops::__private::assert_key_arg::<#ty>(); }
    });
    let ret = match &func.sig.output {
        ReturnType::Type(_, ty) => {
            quote_spanned! { ty.span()=> ::cacheops::__private::assert_fn_result::<#ty>(); }
        }
        ReturnType::Default => quote! {},
    };
    quote! { #(#args)* #ret }
}

fn options(attr: &CachedAsAttr) -> TokenStream {
    let timeout = attr.timeout.as_ref().map(|t| {
        let duration = wrap::duration(t);
        quote_spanned! { t.span()=> .timeout(#duration) }
    });
    let extra = attr.extra.as_ref().map(wrap::extra);
    let lock = attr
        .lock
        .as_ref()
        .map(|l| quote_spanned! { l.span()=> .lock(#l) });
    quote! { ::cacheops::Options::new() #timeout #extra #lock }
}

/// The key of a call, given the `Options` expression and where it is evaluated
/// (in the function's module, or in the helper module named after it).
fn key_expr(func: &ItemFn, params: &[&Param], options: &TokenStream, inside: bool) -> TokenStream {
    // Inside `mod <fn name>`, `module_path!()` already ends with the function's name.
    let site = if inside {
        quote! { ::core::module_path!() }
    } else {
        let name = func.sig.ident.to_string();
        quote! { ::core::concat!(::core::module_path!(), "::", #name) }
    };
    let idents = params.iter().map(|p| &p.ident);
    let ok = match &func.sig.output {
        ReturnType::Type(_, ty) => quote! { <#ty as ::cacheops::__private::FnResult>::Ok },
        ReturnType::Default => quote! { () },
    };
    quote! { ::cacheops::cached_as_key::<#ok, _>(#site, &(#(&#idents,)*), &#options) }
}

fn samples(attr: &CachedAsAttr) -> TokenStream {
    let backend = attr
        .backend
        .as_ref()
        .map(ToTokens::to_token_stream)
        .unwrap_or_default();
    let samples = attr.samples.iter().map(|s| match s {
        Sample::Query(e) => {
            quote_spanned! { e.span()=> ::cacheops::Sample::query::<#backend, _>(#e) }
        }
        Sample::Object(e) => {
            quote_spanned! { e.span()=> ::cacheops::Sample::object::<#backend, _>(#e) }
        }
        Sample::Model(t) => quote_spanned! { t.span()=> ::cacheops::Sample::model::<#t>() },
        Sample::Table(e) => quote_spanned! { e.span()=> ::cacheops::Sample::table(#e) },
    });
    quote! { [#(#samples),*] }
}

fn handle(attr: &CachedAsAttr) -> TokenStream {
    match &attr.handle {
        Some(h) => quote_spanned! { h.span()=> ::core::option::Option::Some(#h) },
        None => quote! { ::core::option::Option::None },
    }
}

/// The bodies of the module's functions.
struct Bodies {
    key: TokenStream,
    invalidate: TokenStream,
    invalidate_using: TokenStream,
}

impl Bodies {
    fn real(key: TokenStream, params: &[&Param], mode: Mode) -> Bodies {
        let idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
        let (invalidate, invalidate_using) = match mode {
            Mode::Blocking => (
                quote! { ::cacheops::global()?.invalidate_key(key(#(#idents),*)?) },
                quote! { handle.invalidate_key(key(#(#idents),*)?) },
            ),
            Mode::Async => (
                quote! { ::cacheops::__private::invalidate_async(::core::option::Option::None, key(#(#idents),*)) },
                quote! { ::cacheops::__private::invalidate_async(::core::option::Option::Some(handle), key(#(#idents),*)) },
            ),
        };
        Bodies {
            key,
            invalidate,
            invalidate_using,
        }
    }
}

/// `mod <fn name> { key(args), invalidate(args), invalidate_using(handle, args) }`.
fn module(func: &ItemFn, params: &[&Param], bodies: &Bodies) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    // Lifetime parameters only: the signature check allows no others.
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    let decls: Vec<TokenStream> = params
        .iter()
        .map(|Param { ident, ty }| quote! { #ident: #ty })
        .collect();
    let doc_key = format!("The cache key of [`{name}`](fn@super::{name}) for these arguments.");
    let doc_inv = format!("Drops the cached result of [`{name}`](fn@super::{name}) for these arguments, on the process-wide handle.");
    let invalidated = Mode::of(&func.sig).invalidation_output();
    let Bodies {
        key,
        invalidate,
        invalidate_using,
    } = bodies;
    quote! {
        #[doc = ::core::concat!("Cache helpers of [`", ::core::stringify!(#name), "`](fn@", ::core::stringify!(#name), ").")]
        #[allow(unused_imports, non_snake_case, clippy::needless_pass_by_value)]
        #vis mod #name {
            use super::*;

            #[doc = #doc_key]
            pub fn key #generics (#(#decls),*) -> ::cacheops::Result<::cacheops::__private::CacheKey> #where_clause {
                #key
            }

            #[doc = #doc_inv]
            pub fn invalidate #generics (#(#decls),*) -> #invalidated #where_clause {
                #invalidate
            }

            /// [`invalidate`] on the given handle.
            pub fn invalidate_using #generics (handle: &::cacheops::Cacheops, #(#decls),*) -> #invalidated #where_clause {
                #invalidate_using
            }
        }
    }
}
