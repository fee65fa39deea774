//! `#[cached(timeout = .., extra = .., lock, lock_timeout = .., cache = ..)]`,
//! read into a [`CachedAttr`].

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Token};

use crate::ctxt::Errors;

/// What the attribute says.
#[derive(Default)]
pub(crate) struct CachedAttr {
    /// Seconds (an integer literal) or a `Duration` expression.
    pub(crate) timeout: Option<Expr>,
    pub(crate) extra: Option<Expr>,
    pub(crate) lock: bool,
    pub(crate) lock_timeout: Option<Expr>,
    /// Anything that derefs to a `SimpleCache`.
    pub(crate) cache: Option<Expr>,
}

pub(crate) fn read(tokens: TokenStream, errors: &mut Errors) -> CachedAttr {
    let mut attr = CachedAttr::default();
    let parser = syn::meta::parser(|meta| read_option(meta, &mut attr));
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push_syn(e);
    }
    attr
}

fn read_option(meta: ParseNestedMeta<'_>, attr: &mut CachedAttr) -> syn::Result<()> {
    let key = super::meta_key(&meta);
    match key.as_str() {
        "timeout" => attr.timeout = Some(value(&meta, "600")?),
        "lock_timeout" => attr.lock_timeout = Some(value(&meta, "5")?),
        "extra" => attr.extra = Some(value(&meta, "\"v2\"")?),
        "cache" => attr.cache = Some(value(&meta, "CACHE")?),
        "lock" => attr.lock = lock(&meta)?,
        _ => {
            return Err(meta.error(
                "unknown #[cached] option; expected `timeout`, `extra`, `lock`, `lock_timeout` or `cache`",
            ))
        }
    }
    Ok(())
}

/// The expression of `key = <expr>`; a bare `key` is reported at the key
/// (syn would point at the whole attribute).
fn value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        let key = super::meta_key(meta);
        return Err(meta.error(format!("`{key}` takes a value, e.g. `{key} = {example}`")));
    }
    meta.value()?.parse()
}

/// `lock` alone means `lock = true`.
fn lock(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if !meta.input.peek(Token![=]) {
        return Ok(true);
    }
    let value: Expr = meta.value()?.parse()?;
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Ok(flag.value),
        _ => Err(syn::Error::new(
            value.span(),
            "`lock` takes a boolean literal: `lock`, `lock = true` or `lock = false`",
        )),
    }
}
