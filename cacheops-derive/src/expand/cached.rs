//! `#[cached]`: the function run through `SimpleCache::__cached_fn` (an `async
//! fn` through `__cached_fn_async`, awaited), and a module of the same name with
//! `key(args)` and `invalidate(args)` (async for an `async fn`; a module lives
//! in the type namespace, the function in the value namespace, so both can be
//! named after the function).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, Visibility};

use super::wrap::{self, wrap_body, Mode};
use crate::attr::cached::CachedAttr;
use crate::ctxt::Errors;
use crate::fallback;
use crate::signature::{Param, Rules, CACHED};

impl super::FunctionAttr for CachedAttr {
    const RULES: Rules = CACHED;

    fn read(tokens: TokenStream, errors: &mut Errors) -> Self {
        crate::attr::cached::read(tokens, errors)
    }

    fn emit(&self, func: &ItemFn, params: &[Param]) -> TokenStream {
        let args: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
        let wrapped = wrap_body(func, quote! { move }, |body, mode| {
            run(func, self, &args, body, mode)
        });
        let module = module(
            func,
            params,
            &Bodies::real(self, &args, Mode::of(&func.sig)),
        );
        quote! { #wrapped #module }
    }

    fn stub_module(&self, func: &ItemFn, params: &[Param]) -> TokenStream {
        let mode = Mode::of(&func.sig);
        let bodies = Bodies {
            key: fallback::stub_body(&CACHED, Mode::Blocking),
            invalidate: fallback::stub_body(&CACHED, mode),
        };
        module(func, params, &bodies)
    }
}

/// The new body: the options, then one call that runs the old body on a miss.
fn run(
    func: &ItemFn,
    attr: &CachedAttr,
    args: &[&Ident],
    body: TokenStream,
    mode: Mode,
) -> TokenStream {
    let name = &func.sig.ident;
    let key = key_expr(quote! { #name::FUNCTION }, attr, args);
    let cache = cache_result(attr);
    let timeout = attr.timeout.iter().map(wrap::duration);
    let lock_timeout = attr.lock_timeout.iter().map(wrap::duration);
    let lock = attr.lock;
    let (cached_fn, wait) = (mode.runtime("__cached_fn"), mode.wait());
    quote! {
        let __cacheops_options = ::cacheops::CachedOptions::new()
            #(.timeout(#timeout))*
            #(.lock_timeout(#lock_timeout))*
            .lock(#lock);
        ::cacheops::SimpleCache::#cached_fn(#key, #cache, &__cacheops_options, #body) #wait
    }
}

/// `FnKey::new(<fn path>).arg(&a)...extra(&e).finish()`; `function` names the
/// module's `FUNCTION` constant from where the key is built.
fn key_expr(function: TokenStream, attr: &CachedAttr, args: &[&Ident]) -> TokenStream {
    let extra = attr.extra.as_ref().map(wrap::extra);
    quote! {
        ::cacheops::FnKey::new(#function)
            #(.arg(&#args))*
            #extra
            .finish()
    }
}

/// `&SimpleCache` to use: `cache = <expr>` (anything that derefs to one), else
/// the process-wide one.
fn cache_expr(attr: &CachedAttr) -> TokenStream {
    match &attr.cache {
        Some(cache) => quote_spanned! {cache.span()=>
            let __cacheops_cache: &::cacheops::SimpleCache = &(#cache);
        },
        None => quote! {
            let __cacheops_cache = &::cacheops::cache()?;
        },
    }
}

/// The cache as a `cacheops::Result` of something that borrows as a
/// `SimpleCache`, for `SimpleCache::__cached_fn`.
fn cache_result(attr: &CachedAttr) -> TokenStream {
    match &attr.cache {
        Some(cache) => quote_spanned! {cache.span()=>
            ::cacheops::Result::<&::cacheops::SimpleCache>::Ok(&(#cache))
        },
        None => quote! { ::cacheops::cache() },
    }
}

/// The cache, owned, for an async function's `invalidate`, whose future
/// borrows nothing.
fn owned_cache(attr: &CachedAttr) -> TokenStream {
    match &attr.cache {
        Some(cache) => quote_spanned! {cache.span()=>
            ::cacheops::Result::Ok(<::cacheops::SimpleCache as ::core::clone::Clone>::clone(&(#cache)))
        },
        None => quote! { ::cacheops::cache() },
    }
}

/// The bodies of `key` and `invalidate` in the emitted module.
struct Bodies {
    key: TokenStream,
    invalidate: TokenStream,
}

impl Bodies {
    fn real(attr: &CachedAttr, args: &[&Ident], mode: Mode) -> Bodies {
        let key = key_expr(quote! { FUNCTION }, attr, args);
        let invalidate = match mode {
            Mode::Blocking => {
                let cache = cache_expr(attr);
                quote! {
                    let __cacheops_key = key(#(#args),*)?;
                    #cache
                    __cacheops_cache.delete(&__cacheops_key)
                }
            }
            Mode::Async => {
                let cache = owned_cache(attr);
                quote! { ::cacheops::SimpleCache::__invalidate_fn_async(key(#(#args),*), #cache) }
            }
        };
        Bodies { key, invalidate }
    }
}

fn module(func: &ItemFn, params: &[Param], bodies: &Bodies) -> TokenStream {
    let name = &func.sig.ident;
    let vis = &func.vis;
    let inner = inner_vis(vis);
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    let inputs = params
        .iter()
        .map(|Param { ident, ty }| quote! { #ident: #ty });
    let inputs: Vec<TokenStream> = inputs.collect();
    let doc = format!("Key and invalidation of the cached function [`{name}()`].");
    let invalidated = Mode::of(&func.sig).invalidation_output();
    let Bodies { key, invalidate } = bodies;
    quote! {
        #[doc = #doc]
        #[allow(non_snake_case, unused_imports, unused_variables, clippy::needless_pass_by_value)]
        #vis mod #name {
            use super::*;

            /// The function's identity in its keys: this module's path, which is
            /// the function's (they share a name).
            #[doc(hidden)]
            #inner const FUNCTION: &str = ::core::module_path!();

            /// The cache key of a call with these arguments: `<module>::<fn>:<hash>`.
            #inner fn key #generics (#(#inputs),*) -> ::cacheops::Result<::std::string::String> #where_clause {
                #key
            }

            /// Forgets the cached result of a call with these arguments.
            #inner fn invalidate #generics (#(#inputs),*) -> #invalidated #where_clause {
                #invalidate
            }
        }
    }
}

/// Visibility of `key`/`invalidate` inside the module: as visible as the
/// function (the module's own visibility, the function's, bounds them).
fn inner_vis(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => quote! { pub },
        Visibility::Inherited => quote! { pub(super) },
        Visibility::Restricted(_) => quote! { pub(crate) },
    }
}
