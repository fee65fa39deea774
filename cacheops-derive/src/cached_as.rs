//! `#[cached_as(...)]` on a function: reads the attribute and the signature
//! (every problem reported at once, each with its span), then wraps the body in a
//! call to `Cacheops::cached_as_resolved` and emits a module of the same name
//! holding `key(args)` and `invalidate(args)`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Token, Type};

use crate::attr::Errors;

/// One thing the result depends on, as written in the attribute.
enum SampleArg {
    Query(Expr),
    Object(Expr),
    Model(Type),
    Table(Expr),
}

/// The attribute's arguments.
#[derive(Default)]
struct Attr {
    samples: Vec<SampleArg>,
    timeout: Option<Expr>,
    extra: Option<Expr>,
    lock: Option<Expr>,
    backend: Option<Type>,
    handle: Option<Expr>,
    skip: Vec<Ident>,
}

/// A parameter that is part of the key.
struct KeyParam {
    ident: Ident,
    ty: Type,
}

/// The macro's output, or its errors plus the function unchanged (so that one
/// mistake does not also break every caller).
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let error =
                syn::Error::new(e.span(), "#[cached_as] goes on a function").to_compile_error();
            return quote! { #error #item };
        }
    };
    let mut errors = Errors::default();
    let attr = read_attr(attr, &mut errors);
    let params = read_signature(&func, &attr, &mut errors);
    check_samples(&attr, &mut errors);
    match errors.into_result() {
        Ok(()) => emit(&func, &attr, &params),
        Err(e) => {
            let error = e.to_compile_error();
            quote! { #error #func }
        }
    }
}

fn read_attr(tokens: TokenStream, errors: &mut Errors) -> Attr {
    let mut attr = Attr::default();
    match Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(args) => args
            .into_iter()
            .for_each(|arg| read_arg(arg, &mut attr, errors)),
        Err(e) => errors.push(e.span(), e),
    }
    attr
}

fn read_arg(arg: Expr, attr: &mut Attr, errors: &mut Errors) {
    match arg {
        Expr::Assign(assign) => read_option(*assign.left, *assign.right, attr, errors),
        Expr::Call(call) => match ident_of(&call.func).as_deref() {
            Some("model") => one_arg(&call, errors, |a| {
                as_type(a).map(|ty| attr.samples.push(SampleArg::Model(ty)))
            }),
            Some("object") => one_arg(&call, errors, |a| {
                attr.samples.push(SampleArg::Object(a.clone()));
                Ok(())
            }),
            Some("table") => one_arg(&call, errors, |a| {
                attr.samples.push(SampleArg::Table(a.clone()));
                Ok(())
            }),
            Some("skip") => read_skip(&call, attr, errors),
            _ => attr.samples.push(SampleArg::Query(Expr::Call(call))),
        },
        other => attr.samples.push(SampleArg::Query(other)),
    }
}

fn read_option(key: Expr, value: Expr, attr: &mut Attr, errors: &mut Errors) {
    let span = key.span();
    match ident_of(&key).as_deref() {
        Some("timeout") => attr.timeout = Some(value),
        Some("extra") => attr.extra = Some(value),
        Some("lock") => attr.lock = Some(value),
        Some("handle") => attr.handle = Some(value),
        Some("backend") => match as_type(&value) {
            Ok(ty) => attr.backend = Some(ty),
            Err(e) => errors.push(e.span(), e),
        },
        _ => errors.push(
            span,
            "unknown #[cached_as] option; expected `timeout`, `extra`, `lock`, `backend` or `handle`",
        ),
    }
}

/// Calls `read` with the only argument of `call`, or reports the wrong count.
fn one_arg(call: &syn::ExprCall, errors: &mut Errors, read: impl FnOnce(&Expr) -> syn::Result<()>) {
    if call.args.len() != 1 {
        errors.push(call.span(), "expected exactly one argument");
        return;
    }
    if let Err(e) = read(&call.args[0]) {
        errors.push(e.span(), e);
    }
}

fn read_skip(call: &syn::ExprCall, attr: &mut Attr, errors: &mut Errors) {
    for arg in &call.args {
        match ident_of(arg) {
            Some(_) => attr
                .skip
                .push(Ident::new(&ident_of(arg).unwrap_or_default(), arg.span())),
            None => errors.push(arg.span(), "`skip(...)` takes argument names"),
        }
    }
}

fn ident_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().map(Ident::to_string),
        _ => None,
    }
}

fn as_type(expr: &Expr) -> syn::Result<Type> {
    syn::parse2(expr.to_token_stream())
        .map_err(|_| syn::Error::new(expr.span(), "expected a type, e.g. `diesel::pg::Pg`"))
}

/// A query or object sample needs the backend to render or encode it.
fn check_samples(attr: &Attr, errors: &mut Errors) {
    if attr.backend.is_some() {
        return;
    }
    for sample in &attr.samples {
        if let SampleArg::Query(e) | SampleArg::Object(e) = sample {
            errors.push(
                e.span(),
                "this sample needs its Diesel backend: add `backend = diesel::pg::Pg` (or `diesel::sqlite::Sqlite`) to #[cached_as]",
            );
        }
    }
}

/// The parameters that form the key; reports unsupported signatures.
fn read_signature(func: &ItemFn, attr: &Attr, errors: &mut Errors) -> Vec<KeyParam> {
    let sig = &func.sig;
    if let Some(asyncness) = &sig.asyncness {
        errors.push(
            asyncness.span(),
            "#[cached_as] does not support async functions",
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push(
            sig.generics.span(),
            "#[cached_as] does not support generic functions (the key module could not name the types)",
        );
    }
    if let ReturnType::Default = sig.output {
        errors.push(
            sig.ident.span(),
            "a #[cached_as] function must return `Result<T, E>` with `E: From<cacheops::Error>`",
        );
    }
    let handle = attr.handle.as_ref().and_then(ident_of);
    let mut params = Vec::new();
    for input in &sig.inputs {
        if let Some(param) = read_param(input, attr, handle.as_deref(), errors) {
            params.push(param);
        }
    }
    check_skips(attr, sig, errors);
    params
}

fn read_param(
    input: &FnArg,
    attr: &Attr,
    handle: Option<&str>,
    errors: &mut Errors,
) -> Option<KeyParam> {
    let typed = match input {
        FnArg::Receiver(r) => {
            errors.push(
                r.span(),
                "#[cached_as] does not support methods; write a free function taking the value",
            );
            return None;
        }
        FnArg::Typed(typed) => typed,
    };
    let Pat::Ident(pat) = &*typed.pat else {
        errors.push(
            typed.pat.span(),
            "#[cached_as] needs plain argument names, not patterns",
        );
        return None;
    };
    if let Type::ImplTrait(ty) = &*typed.ty {
        errors.push(
            ty.span(),
            "#[cached_as] does not support `impl Trait` arguments; name the type",
        );
        return None;
    }
    let ident = pat.ident.clone();
    let skipped = attr.skip.contains(&ident) || handle == Some(ident.to_string().as_str());
    // A `&mut` argument (a connection, a buffer) is state, not a key part.
    let mutable = matches!(&*typed.ty, Type::Reference(r) if r.mutability.is_some());
    (!skipped && !mutable).then(|| KeyParam {
        ident,
        ty: (*typed.ty).clone(),
    })
}

fn check_skips(attr: &Attr, sig: &syn::Signature, errors: &mut Errors) {
    let names: Vec<String> = sig
        .inputs
        .iter()
        .filter_map(|i| match i {
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(p) => Some(p.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    for skip in &attr.skip {
        if !names.contains(&skip.to_string()) {
            errors.push(
                skip.span(),
                "`skip` names an argument this function does not have",
            );
        }
    }
}

fn emit(func: &ItemFn, attr: &Attr, params: &[KeyParam]) -> TokenStream {
    let wrapped = wrap_body(func, attr, params);
    let module = key_module(func, attr, params);
    quote! { #wrapped #module }
}

/// `(&a, &b,)`: the key arguments, borrowed.
fn key_tuple(params: &[KeyParam]) -> TokenStream {
    let idents = params.iter().map(|p| &p.ident);
    quote! { (#(&#idents,)*) }
}

fn site(func: &ItemFn) -> TokenStream {
    let name = func.sig.ident.to_string();
    quote! { ::core::concat!(::core::module_path!(), "::", #name) }
}

fn options(attr: &Attr) -> TokenStream {
    let timeout = attr.timeout.as_ref().map(|t| match t {
        Expr::Lit(lit) if matches!(lit.lit, syn::Lit::Int(_)) => {
            quote_spanned! { t.span()=> .timeout(::core::time::Duration::from_secs(#t)) }
        }
        other => quote_spanned! { other.span()=> .timeout(#other) },
    });
    let extra = attr
        .extra
        .as_ref()
        .map(|e| quote_spanned! { e.span()=> .extra(&(#e)) });
    let lock = attr
        .lock
        .as_ref()
        .map(|l| quote_spanned! { l.span()=> .lock(#l) });
    quote! { ::cacheops::Options::new() #timeout #extra #lock }
}

fn ok_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Type(_, ty) => quote! { <#ty as ::cacheops::__private::FnResult>::Ok },
        ReturnType::Default => quote! { () },
    }
}

/// The key of a call, given the `Options` expression and where it is evaluated
/// (in the function's module, or in the helper module named after it).
fn key_expr(
    func: &ItemFn,
    params: &[KeyParam],
    options: &TokenStream,
    inside: bool,
) -> TokenStream {
    // Inside `mod <fn name>`, `module_path!()` already ends with the function's name.
    let site = if inside {
        quote! { ::core::module_path!() }
    } else {
        site(func)
    };
    let tuple = key_tuple(params);
    let ok = ok_type(func);
    quote! { ::cacheops::cached_as_key::<#ok, _>(#site, &#tuple, &#options) }
}

fn samples(attr: &Attr) -> TokenStream {
    let backend = attr
        .backend
        .as_ref()
        .map(ToTokens::to_token_stream)
        .unwrap_or_default();
    let samples = attr.samples.iter().map(|s| match s {
        SampleArg::Query(e) => {
            quote_spanned! { e.span()=> ::cacheops::Sample::query::<#backend, _>(#e) }
        }
        SampleArg::Object(e) => {
            quote_spanned! { e.span()=> ::cacheops::Sample::object::<#backend, _>(#e) }
        }
        SampleArg::Model(t) => quote_spanned! { t.span()=> ::cacheops::Sample::model::<#t>() },
        SampleArg::Table(e) => quote_spanned! { e.span()=> ::cacheops::Sample::table(#e) },
    });
    quote! { [#(#samples),*] }
}

fn handle(attr: &Attr) -> TokenStream {
    match &attr.handle {
        Some(h) => quote_spanned! { h.span()=> ::core::option::Option::Some(#h) },
        None => quote! { ::core::option::Option::None },
    }
}

fn checks(func: &ItemFn, params: &[KeyParam]) -> TokenStream {
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

/// The function, its body run through the cache.
fn wrap_body(func: &ItemFn, attr: &Attr, params: &[KeyParam]) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => quote! { #ty },
        ReturnType::Default => quote! { () },
    };
    let checks = checks(func, params);
    let options = options(attr);
    let key = key_expr(func, params, &quote! { __cacheops_options }, false);
    let handle = handle(attr);
    let samples = samples(attr);
    let fn_result = quote_spanned! { ret.span()=> <#ret as ::cacheops::__private::FnResult> };
    quote! {
        #(#attrs)*
        #vis #sig {
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
            __cacheops_call.run(&__cacheops_options, || -> #ret #block)
        }
    }
}

/// `mod <fn name> { key(args), invalidate(args), invalidate_using(handle, args) }`.
fn key_module(func: &ItemFn, attr: &Attr, params: &[KeyParam]) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let key = key_expr(func, params, &options(attr), true);
    let idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let decls = params.iter().map(|p| {
        let (ident, ty) = (&p.ident, &p.ty);
        quote! { #ident: #ty }
    });
    let decls: Vec<TokenStream> = decls.collect();
    let doc_key = format!("The cache key of [`{name}`](fn@super::{name}) for these arguments.");
    let doc_inv = format!("Drops the cached result of [`{name}`](fn@super::{name}) for these arguments, on the process-wide handle.");
    quote! {
        #[doc = ::core::concat!("Cache helpers of [`", ::core::stringify!(#name), "`](fn@", ::core::stringify!(#name), ").")]
        #[allow(unused_imports, non_snake_case, clippy::needless_pass_by_value)]
        #vis mod #name {
            use super::*;

            #[doc = #doc_key]
            pub fn key(#(#decls),*) -> ::cacheops::Result<::cacheops::store::CacheKey> {
                #key
            }

            #[doc = #doc_inv]
            pub fn invalidate(#(#decls),*) -> ::cacheops::Result<()> {
                ::cacheops::global()?.invalidate_key(key(#(#idents),*)?)
            }

            /// [`invalidate`] on the given handle.
            pub fn invalidate_using(handle: &::cacheops::Cacheops, #(#decls),*) -> ::cacheops::Result<()> {
                handle.invalidate_key(key(#(#idents),*)?)
            }
        }
    }
}
