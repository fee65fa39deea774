//! Reads `#[diesel(...)]` and `#[cacheops(...)]` attributes into a [`Model`],
//! collecting every error with its span instead of stopping at the first.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitInt, LitStr, Path, Type};

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

/// Errors gathered while reading, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        let error = syn::Error::new(span, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn push_syn(&mut self, error: syn::Error) {
        self.push(error.span(), error);
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Reads the model, or every problem found.
pub(crate) fn read(input: &DeriveInput) -> Result<Model, syn::Error> {
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.push(
            input.generics.span(),
            "#[derive(Cacheable)] does not support generic models",
        );
    }
    let mut model = Model {
        ident: input.ident.clone(),
        table: default_table(&input.ident),
        table_name: String::new(),
        primary_key: vec![Ident::new("id", Span::call_site())],
        label: None,
        app: None,
        ops: None,
        timeout: None,
        fields: Vec::new(),
    };
    read_struct_attrs(&input.attrs, &mut model, &mut errors);
    model.fields = read_fields(input, &mut errors);
    if model.table_name.is_empty() {
        model.table_name = last_segment(&model.table);
    }
    check_primary_key(&model, &mut errors);
    errors.into_result().map(|()| model)
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

fn read_struct_attrs(attrs: &[Attribute], model: &mut Model, errors: &mut Errors) {
    for attr in attrs {
        let parsed = if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| read_diesel_struct(meta, model))
        } else if attr.path().is_ident("cacheops") {
            attr.parse_nested_meta(|meta| read_cacheops_struct(meta, model))
        } else {
            Ok(())
        };
        if let Err(e) = parsed {
            errors.push_syn(e);
        }
    }
}

fn read_diesel_struct(meta: syn::meta::ParseNestedMeta<'_>, model: &mut Model) -> syn::Result<()> {
    if meta.path.is_ident("table_name") {
        model.table = meta.value()?.parse()?;
    } else if meta.path.is_ident("primary_key") {
        let content;
        syn::parenthesized!(content in meta.input);
        let keys = content.parse_terminated(Ident::parse_any_ident, syn::Token![,])?;
        model.primary_key = keys.into_iter().collect();
    } else {
        skip_meta(&meta)?;
    }
    Ok(())
}

fn read_cacheops_struct(
    meta: syn::meta::ParseNestedMeta<'_>,
    model: &mut Model,
) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(Ident::to_string)
        .unwrap_or_default();
    match key.as_str() {
        "app" => model.app = Some(meta.value()?.parse::<LitStr>()?.value()),
        "label" => model.label = Some(meta.value()?.parse::<LitStr>()?.value()),
        "ops" => model.ops = Some(meta.value()?.parse::<LitStr>()?.value()),
        "table" => model.table_name = meta.value()?.parse::<LitStr>()?.value(),
        "timeout" => model.timeout = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?),
        _ => {
            return Err(meta.error(
                "unknown cacheops attribute; expected `app`, `label`, `ops`, `table` or `timeout`",
            ))
        }
    }
    Ok(())
}

/// Consumes an attribute argument we do not care about (`check_for_backend(...)`,
/// `treat_none_as_null = true`, ...).
fn skip_meta(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

fn read_fields(input: &DeriveInput, errors: &mut Errors) -> Vec<Field> {
    let Data::Struct(data) = &input.data else {
        errors.push(input.ident.span(), "#[derive(Cacheable)] needs a struct");
        return Vec::new();
    };
    let Fields::Named(named) = &data.fields else {
        errors.push(
            data.fields.span(),
            "#[derive(Cacheable)] needs named fields",
        );
        return Vec::new();
    };
    named
        .named
        .iter()
        .filter_map(|f| read_field(f, errors))
        .collect()
}

fn read_field(field: &syn::Field, errors: &mut Errors) -> Option<Field> {
    let member = field.ident.clone()?;
    let mut out = Field {
        column: member.clone(),
        member,
        ty: field.ty.clone(),
        exact: None,
    };
    for attr in &field.attrs {
        let parsed = if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| read_diesel_field(meta, &mut out))
        } else if attr.path().is_ident("cacheops") {
            attr.parse_nested_meta(|meta| read_cacheops_field(meta, &mut out))
        } else {
            Ok(())
        };
        if let Err(e) = parsed {
            errors.push_syn(e);
        }
    }
    Some(out)
}

fn read_diesel_field(meta: syn::meta::ParseNestedMeta<'_>, field: &mut Field) -> syn::Result<()> {
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

fn read_cacheops_field(meta: syn::meta::ParseNestedMeta<'_>, field: &mut Field) -> syn::Result<()> {
    if meta.path.is_ident("exact") {
        field.exact = Some(true);
    } else if meta.path.is_ident("inexact") {
        field.exact = Some(false);
    } else {
        return Err(meta.error("unknown cacheops field attribute; expected `exact` or `inexact`"));
    }
    Ok(())
}

fn check_primary_key(model: &Model, errors: &mut Errors) {
    for key in &model.primary_key {
        if !model.fields.iter().any(|f| f.column == *key) {
            errors.push(
                key.span(),
                format!("primary key column `{key}` is not a field of this model; set #[diesel(primary_key(...))]"),
            );
        }
    }
}

/// `Ident::parse_any` as a plain function for `parse_terminated`.
trait ParseAnyIdent {
    fn parse_any_ident(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input)
    }
}
