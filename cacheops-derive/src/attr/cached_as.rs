//! `#[cached_as(<samples>, <options>, skip(..))]`, read into a [`CachedAsAttr`].
//! Samples are arbitrary expressions, so the attribute is read as a list of
//! expressions and each is sorted by its shape.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprCall, Ident, Token, Type};

use crate::ctxt::Errors;

/// One thing the result depends on, as written in the attribute.
pub(crate) enum Sample {
    Query(Expr),
    Object(Expr),
    Model(Type),
    Table(Expr),
}

/// The attribute's arguments.
#[derive(Default)]
pub(crate) struct CachedAsAttr {
    pub(crate) samples: Vec<Sample>,
    pub(crate) timeout: Option<Expr>,
    pub(crate) extra: Option<Expr>,
    pub(crate) lock: Option<Expr>,
    pub(crate) backend: Option<Type>,
    pub(crate) handle: Option<Expr>,
    pub(crate) skip: Vec<Ident>,
}

impl CachedAsAttr {
    /// Whether the argument `ident` stays out of the key: skipped, or the handle.
    pub(crate) fn leaves_out(&self, ident: &Ident) -> bool {
        let handle = self.handle.as_ref().and_then(ident_of);
        self.skip.contains(ident) || handle.is_some_and(|h| *ident == h)
    }
}

pub(crate) fn read(tokens: TokenStream, errors: &mut Errors) -> CachedAsAttr {
    let mut attr = CachedAsAttr::default();
    match Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(args) => args
            .into_iter()
            .for_each(|arg| read_arg(arg, &mut attr, errors)),
        Err(e) => errors.push_syn(e),
    }
    attr
}

/// `key = value` is an option, `model(..)`, `object(..)`, `table(..)` and
/// `skip(..)` are what they say, anything else is a query.
fn read_arg(arg: Expr, attr: &mut CachedAsAttr, errors: &mut Errors) {
    match arg {
        Expr::Assign(assign) => read_option(*assign.left, *assign.right, attr, errors),
        Expr::Call(call) => match ident_of(&call.func).as_deref() {
            Some("model") => one_arg(&call, errors, |a| {
                as_type(a).map(|ty| attr.samples.push(Sample::Model(ty)))
            }),
            Some("object") => one_arg(&call, errors, |a| {
                attr.samples.push(Sample::Object(a.clone()));
                Ok(())
            }),
            Some("table") => one_arg(&call, errors, |a| {
                attr.samples.push(Sample::Table(a.clone()));
                Ok(())
            }),
            Some("skip") => read_skip(&call, attr, errors),
            _ => attr.samples.push(Sample::Query(Expr::Call(call))),
        },
        other => attr.samples.push(Sample::Query(other)),
    }
}

fn read_option(key: Expr, value: Expr, attr: &mut CachedAsAttr, errors: &mut Errors) {
    match ident_of(&key).as_deref() {
        Some("timeout") => attr.timeout = Some(value),
        Some("extra") => attr.extra = Some(value),
        Some("lock") => attr.lock = Some(value),
        Some("handle") => attr.handle = Some(value),
        Some("backend") => match as_type(&value) {
            Ok(ty) => attr.backend = Some(ty),
            Err(e) => errors.push_syn(e),
        },
        _ => errors.push(
            key.span(),
            "unknown #[cached_as] option; expected `timeout`, `extra`, `lock`, `backend` or `handle`",
        ),
    }
}

/// Calls `read` with the only argument of `call`, or reports the wrong count.
fn one_arg(call: &ExprCall, errors: &mut Errors, read: impl FnOnce(&Expr) -> syn::Result<()>) {
    if call.args.len() != 1 {
        errors.push(call.span(), "expected exactly one argument");
        return;
    }
    if let Err(e) = read(&call.args[0]) {
        errors.push_syn(e);
    }
}

fn read_skip(call: &ExprCall, attr: &mut CachedAsAttr, errors: &mut Errors) {
    for arg in &call.args {
        match ident_of(arg) {
            Some(name) => attr.skip.push(Ident::new(&name, arg.span())),
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
