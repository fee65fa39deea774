//! `#[cached(timeout = .., extra = .., lock = .., cache = ..)]` on a function:
//! reads the attribute and the signature, then emits the function wrapped in a
//! call to `cacheops::SimpleCache::cached`, plus a module of the same name with
//! `key(args)` and `invalidate(args)` (a module lives in the type namespace, the
//! function in the value namespace, so both can be named after the function).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, LitBool, LitInt, Pat, ReturnType, Type, Visibility};

use crate::attr::Errors;

/// What the attribute says.
#[derive(Default)]
struct Options {
    timeout: Option<TokenStream>,
    extra: Option<Expr>,
    lock: bool,
    lock_timeout: Option<TokenStream>,
    cache: Option<Expr>,
}

/// The expansion, or the errors plus the function unchanged and a stub module
/// (so that its callers, and callers of `key`/`invalidate`, do not fail too).
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[cached] goes on a function (use cacheops::cached(..) elsewhere)",
            );
            let error = error.to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let options = read_options(attr, &mut errors);
    let args = read_signature(&func, &mut errors);
    match errors.into_result() {
        Ok(()) => emit(&func, &options, &args),
        Err(e) => {
            let error = e.to_compile_error();
            let stub = emit_module(&func, &Bodies::stub());
            quote! { #error #func #stub }
        }
    }
}

fn read_options(attr: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| read_option(meta, &mut options));
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        errors.push(e.span(), e);
    }
    options
}

fn read_option(meta: ParseNestedMeta<'_>, options: &mut Options) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(Ident::to_string)
        .unwrap_or_default();
    match key.as_str() {
        "timeout" => options.timeout = Some(duration(meta.value()?.parse()?)),
        "lock_timeout" => options.lock_timeout = Some(duration(meta.value()?.parse()?)),
        "extra" => options.extra = Some(meta.value()?.parse()?),
        "cache" => options.cache = Some(meta.value()?.parse()?),
        "lock" => {
            options.lock = match meta.input.peek(syn::Token![=]) {
                true => meta.value()?.parse::<LitBool>()?.value,
                false => true,
            }
        }
        _ => {
            return Err(meta.error(
                "unknown #[cached] option; expected `timeout`, `extra`, `lock`, `lock_timeout` or `cache`",
            ))
        }
    }
    Ok(())
}

/// An integer literal is seconds; any other expression must be a `Duration`.
fn duration(expr: Expr) -> TokenStream {
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(secs),
            ..
        }) => seconds(secs),
        _ => quote_spanned! {expr.span()=> #expr },
    }
}

fn seconds(secs: &LitInt) -> TokenStream {
    quote_spanned! {secs.span()=> ::core::time::Duration::from_secs(#secs) }
}

/// The argument names (each part of the key), after checking the signature.
fn read_signature(func: &ItemFn, errors: &mut Errors) -> Vec<Ident> {
    let sig = &func.sig;
    if let Some(token) = &sig.asyncness {
        errors.push(token.span(), "#[cached] does not support async fn");
    }
    if let Some(token) = &sig.constness {
        errors.push(token.span(), "#[cached] cannot go on a const fn");
    }
    if let Some(param) = sig.generics.type_params().next() {
        errors.push(
            param.span(),
            "#[cached] fn cannot be generic over types: every instance would share one key",
        );
    }
    if let Some(param) = sig.generics.const_params().next() {
        errors.push(
            param.span(),
            "#[cached] fn cannot be generic over constants: every instance would share one key",
        );
    }
    check_return(&sig.output, errors);
    sig.inputs
        .iter()
        .filter_map(|arg| arg_name(arg, errors))
        .collect()
}

/// The function must return a `Result` whose error converts from
/// `cacheops::Error` (checked by the compiler on the emitted call).
fn check_return(output: &ReturnType, errors: &mut Errors) {
    let is_result = match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident.to_string().ends_with("Result")),
            _ => false,
        },
        ReturnType::Default => false,
    };
    if !is_result {
        let span = match output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => Span::call_site(),
        };
        errors.push(span, "a #[cached] fn must return cacheops::Result<T>, or Result<T, E> where E: From<cacheops::Error>");
    }
}

fn arg_name(arg: &FnArg, errors: &mut Errors) -> Option<Ident> {
    let typed = match arg {
        FnArg::Typed(typed) => typed,
        FnArg::Receiver(receiver) => {
            errors.push(receiver.span(), "#[cached] cannot go on a method; call cacheops::cached(..) inside it, with a key that names `self`");
            return None;
        }
    };
    match &*typed.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(pat.ident.clone()),
        pat => {
            errors.push(
                pat.span(),
                "arguments of a #[cached] fn must be plain names: each is part of the key",
            );
            None
        }
    }
}

fn emit(func: &ItemFn, options: &Options, args: &[Ident]) -> TokenStream {
    let wrapper = emit_wrapper(func, options, args);
    let module = emit_module(func, &Bodies::real(options, args));
    quote! { #wrapper #module }
}

/// `FnKey::new(<fn path>).arg(&a)...extra(&e).finish()`; `function` names the
/// module's `FUNCTION` constant from where the key is built.
fn key_expr(function: TokenStream, options: &Options, args: &[Ident]) -> TokenStream {
    let extra = options
        .extra
        .as_ref()
        .map(|extra| quote_spanned! {extra.span()=> .extra(&(#extra)) });
    quote! {
        ::cacheops::FnKey::new(#function)
            #(.arg(&#args))*
            #extra
            .finish()
    }
}

/// `&SimpleCache` to use: `cache = <expr>` (anything that derefs to one), else
/// the process-wide one.
fn cache_expr(options: &Options) -> TokenStream {
    match &options.cache {
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
fn cache_result(options: &Options) -> TokenStream {
    match &options.cache {
        Some(cache) => quote_spanned! {cache.span()=>
            ::cacheops::Result::<&::cacheops::SimpleCache>::Ok(&(#cache))
        },
        None => quote! { ::cacheops::cache() },
    }
}

fn emit_wrapper(func: &ItemFn, options: &Options, args: &[Ident]) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let output = match &sig.output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => return quote! { #func },
    };
    let name = &sig.ident;
    let key = key_expr(quote! { #name::FUNCTION }, options, args);
    let cache = cache_result(options);
    let timeout = options.timeout.iter();
    let lock_timeout = options.lock_timeout.iter();
    let lock = options.lock;
    quote! {
        #(#attrs)*
        #vis #sig {
            let __cacheops_options = ::cacheops::CachedOptions::new()
                #(.timeout(#timeout))*
                #(.lock_timeout(#lock_timeout))*
                .lock(#lock);
            ::cacheops::SimpleCache::__cached_fn(#key, #cache, &__cacheops_options, move || -> #output #block)
        }
    }
}

/// The bodies of `key` and `invalidate` in the emitted module.
struct Bodies {
    key: TokenStream,
    invalidate: TokenStream,
}

impl Bodies {
    fn real(options: &Options, args: &[Ident]) -> Bodies {
        let key = key_expr(quote! { FUNCTION }, options, args);
        let cache = cache_expr(options);
        let invalidate = quote! {
            let __cacheops_key = key(#(#args),*)?;
            #cache
            __cacheops_cache.delete(&__cacheops_key)
        };
        Bodies { key, invalidate }
    }

    /// After an error: the module still exists, so calls of `key`/`invalidate`
    /// do not add errors of their own.
    fn stub() -> Bodies {
        let body = quote! { ::core::unimplemented!("#[cached] reported an error") };
        Bodies {
            key: body.clone(),
            invalidate: body,
        }
    }
}

fn emit_module(func: &ItemFn, bodies: &Bodies) -> TokenStream {
    let name = &func.sig.ident;
    let vis = &func.vis;
    let inner = inner_vis(vis);
    let generics = &func.sig.generics;
    let where_clause = &generics.where_clause;
    let inputs = plain_inputs(func);
    let doc = format!("Key and invalidation of the cached function [`{name}()`].");
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
            #inner fn invalidate #generics (#(#inputs),*) -> ::cacheops::Result<()> #where_clause {
                #invalidate
            }
        }
    }
}

/// The function's arguments without `mut` (and without attributes).
fn plain_inputs(func: &ItemFn) -> Vec<TokenStream> {
    let typed = func.sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(typed) => Some(typed),
        FnArg::Receiver(_) => None,
    });
    typed
        .filter_map(|typed| match &*typed.pat {
            Pat::Ident(pat) => {
                let (ident, ty) = (&pat.ident, &typed.ty);
                Some(quote! { #ident: #ty })
            }
            _ => None,
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> String {
        let attr: TokenStream = attr.parse().unwrap();
        expand(attr, item.parse().unwrap()).to_string()
    }

    /// The messages of the `compile_error!`s in an expansion.
    fn errors(attr: &str, item: &str) -> Vec<String> {
        let out = expand_str(attr, item);
        out.split("compile_error !")
            .skip(1)
            .map(|e| e.split('"').nth(1).unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn expands_wrapper_and_module() {
        let out = expand_str(
            "timeout = 600, extra = lang, lock",
            "pub fn top(mut cat: i32, lang: &str) -> cacheops::Result<Vec<u8>> { Ok(vec![]) }",
        );
        assert!(!out.contains("compile_error"), "{out}");
        for part in [
            "pub mod top",
            "pub fn key (cat : i32 , lang : & str)",
            "pub fn invalidate",
            "const FUNCTION",
            "from_secs (600)",
            ". extra (& (lang))",
            ". lock (true)",
            "move || -> cacheops :: Result < Vec < u8 > >",
        ] {
            assert!(out.contains(part), "missing `{part}` in {out}");
        }
    }

    #[test]
    fn private_fn_gets_module_items_visible_to_its_module() {
        let out = expand_str("", "fn f() -> Result<(), E> { Ok(()) }");
        assert!(
            out.contains("mod f") && out.contains("pub (super) fn key"),
            "{out}"
        );
    }

    #[test]
    fn rejects_what_cannot_be_keyed_or_wrapped() {
        let cases = [
            (
                "",
                "async fn f() -> cacheops::Result<()> { Ok(()) }",
                "async",
            ),
            (
                "",
                "fn f(&self) -> cacheops::Result<()> { Ok(()) }",
                "method",
            ),
            ("", "fn f() -> u32 { 1 }", "must return"),
            ("", "fn f() {}", "must return"),
            (
                "",
                "fn f((a, b): (i32, i32)) -> cacheops::Result<()> { Ok(()) }",
                "plain names",
            ),
            (
                "",
                "fn f<T>(t: T) -> cacheops::Result<()> { Ok(()) }",
                "generic",
            ),
            (
                "ttl = 5",
                "fn f() -> cacheops::Result<()> { Ok(()) }",
                "unknown",
            ),
            (
                "lock = \"yes\"",
                "fn f() -> cacheops::Result<()> { Ok(()) }",
                "literal",
            ),
            ("", "struct S;", "goes on a function"),
        ];
        for (attr, item, expected) in cases {
            let found = errors(attr, item);
            assert!(
                found.iter().any(|e| e.contains(expected)),
                "{attr} {item}: expected `{expected}` in {found:?}"
            );
        }
    }

    #[test]
    fn reports_every_error_at_once_and_keeps_the_fn() {
        let item = "async fn f(&self) -> u32 { 1 }";
        assert_eq!(errors("", item).len(), 3, "{:?}", errors("", item));
        assert!(
            expand_str("", item).contains("async fn f"),
            "the fn is kept"
        );
    }
}
