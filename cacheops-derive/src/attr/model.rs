//! `#[diesel(...)]` and `#[cacheops(...)]` on a `#[derive(Cacheable)]` struct and
//! its fields, read into a [`Model`].

use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Expr, ExprLit, Fields, Ident, Lit, LitStr, Path, Type};

use crate::ctxt::Errors;

/// What the derive needs to know about a model.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) table: Path,
    pub(crate) table_name: String,
    pub(crate) primary_key: Vec<Ident>,
    pub(crate) label: Option<String>,
    pub(crate) app: Option<String>,
    pub(crate) ops: Option<String>,
    pub(crate) timeout: Option<u64>,
    pub(crate) fields: Vec<Field>,
}

/// One field and the column it maps to.
pub(crate) struct Field {
    pub(crate) member: Ident,
    pub(crate) column: Ident,
    pub(crate) ty: Type,
    /// `Some(true)` for `#[cacheops(exact)]`, `Some(false)` for `inexact`.
    pub(crate) exact: Option<bool>,
}

/// Reads the model; what cannot be read is in `errors`, with Diesel's defaults
/// in its place.
pub(crate) fn read(input: &DeriveInput, errors: &mut Errors) -> Model {
    let mut model = Model {
        ident: input.ident.clone(),
        table: default_table(&input.ident),
        table_name: String::new(),
        // Spanned at the struct's name, where an error about it points.
        primary_key: vec![Ident::new("id", input.ident.span())],
        label: None,
        app: None,
        ops: None,
        timeout: None,
        fields: Vec::new(),
    };
    read_struct_attrs(&input.attrs, &mut model, errors);
    model.fields = named_fields(input)
        .filter_map(|f| read_field(f, errors))
        .collect();
    if model.table_name.is_empty() {
        model.table_name = last_segment(&model.table);
    }
    model
}

/// The named fields; none for other shapes (`valid.rs` reports those).
pub(crate) fn named_fields(input: &DeriveInput) -> impl Iterator<Item = &syn::Field> {
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(&named.named),
            _ => None,
        },
        _ => None,
    };
    named.into_iter().flatten()
}

/// Diesel's default table: the struct name in snake case, plus `s`.
fn default_table(ident: &Ident) -> Path {
    let mut name = String::new();
    for (i, ch) in ident.to_string().chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.extend(ch.to_lowercase());
    }
    name.push('s');
    Ident::new(&name, ident.span()).into()
}

fn last_segment(path: &Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// Runs `read` over the arguments of each `#[diesel]` and `#[cacheops]`
/// attribute, with the attribute's name.
fn read_attrs(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut read: impl FnMut(&str, ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    for attr in attrs {
        let Some(name) = ["diesel", "cacheops"]
            .into_iter()
            .find(|n| attr.path().is_ident(n))
        else {
            continue;
        };
        if let Err(e) = attr.parse_nested_meta(|meta| read(name, meta)) {
            errors.push_syn(e);
        }
    }
}

fn read_struct_attrs(attrs: &[Attribute], model: &mut Model, errors: &mut Errors) {
    read_attrs(attrs, errors, |name, meta| match name {
        "diesel" => read_diesel_struct(meta, model),
        _ => read_cacheops_struct(meta, model),
    });
}

fn read_diesel_struct(meta: ParseNestedMeta<'_>, model: &mut Model) -> syn::Result<()> {
    if meta.path.is_ident("table_name") {
        model.table = meta.value()?.parse()?;
    } else if meta.path.is_ident("primary_key") {
        let content;
        syn::parenthesized!(content in meta.input);
        let keys = content.parse_terminated(parse_any_ident, syn::Token![,])?;
        model.primary_key = keys.into_iter().collect();
    } else {
        skip_meta(&meta)?;
    }
    Ok(())
}

fn read_cacheops_struct(meta: ParseNestedMeta<'_>, model: &mut Model) -> syn::Result<()> {
    match super::meta_key(&meta).as_str() {
        "app" => model.app = Some(string(&meta, "\"blog\"")?),
        "label" => model.label = Some(string(&meta, "\"blog.Post\"")?),
        // The ops are kept as text: the runtime parses them (`ModelInfo::profile`).
        "ops" => model.ops = Some(string(&meta, "\"get,fetch\"")?),
        "table" => model.table_name = string(&meta, "\"posts\"")?,
        "timeout" => model.timeout = Some(seconds(&meta)?),
        _ => {
            return Err(meta.error(
                "unknown cacheops attribute; expected `app`, `label`, `ops`, `table` or `timeout`",
            ))
        }
    }
    Ok(())
}

/// The string of `key = "..."`, or an error that shows what the key takes.
fn string(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<String> {
    let value: Expr = meta.value()?.parse()?;
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        _ => {
            let key = super::meta_key(meta);
            let message = format!("`{key}` takes a string literal, e.g. `{key} = {example}`");
            Err(syn::Error::new(value.span(), message))
        }
    }
}

/// The whole seconds of `timeout = N`.
fn seconds(meta: &ParseNestedMeta<'_>) -> syn::Result<u64> {
    let value: Expr = meta.value()?.parse()?;
    let secs = match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(secs),
            ..
        }) => secs.base10_parse().ok(),
        _ => None,
    };
    let message = "`timeout` takes whole seconds, e.g. `timeout = 600`";
    secs.ok_or_else(|| syn::Error::new(value.span(), message))
}

/// Consumes an attribute argument we do not care about (`check_for_backend(...)`,
/// `treat_none_as_null = true`, ...).
fn skip_meta(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

fn read_field(field: &syn::Field, errors: &mut Errors) -> Option<Field> {
    let member = field.ident.clone()?;
    let mut out = Field {
        column: member.clone(),
        member,
        ty: field.ty.clone(),
        exact: None,
    };
    read_attrs(&field.attrs, errors, |name, meta| match name {
        "diesel" => read_diesel_field(meta, &mut out),
        _ => read_cacheops_field(meta, &mut out),
    });
    Some(out)
}

fn read_diesel_field(meta: ParseNestedMeta<'_>, field: &mut Field) -> syn::Result<()> {
    if meta.path.is_ident("column_name") {
        let value = meta.value()?;
        field.column = if value.peek(LitStr) {
            let lit: LitStr = value.parse()?;
            Ident::new(&lit.value(), lit.span())
        } else {
            value.parse()?
        };
    } else if meta.path.is_ident("embed") || meta.path.is_ident("serialize_as") {
        return Err(
            meta.error("#[derive(Cacheable)] does not support embedded or `serialize_as` fields")
        );
    } else {
        skip_meta(&meta)?;
    }
    Ok(())
}

fn read_cacheops_field(meta: ParseNestedMeta<'_>, field: &mut Field) -> syn::Result<()> {
    if meta.path.is_ident("exact") {
        field.exact = Some(true);
    } else if meta.path.is_ident("inexact") {
        field.exact = Some(false);
    } else {
        return Err(meta.error("unknown cacheops field attribute; expected `exact` or `inexact`"));
    }
    Ok(())
}

/// A primary key column may be a keyword-like name (`type`, `self_`...).
fn parse_any_ident(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident> {
    use syn::ext::IdentExt;
    Ident::parse_any(input)
}
