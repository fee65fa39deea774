//! Checks of what was read that need more than one attribute, or the item as a
//! whole. (The function shapes `#[cached]` and `#[cached_as]` accept are in
//! `signature.rs`.)

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::cached_as::{CachedAsAttr, Sample};
use crate::attr::model::Model;
use crate::ctxt::Errors;
use crate::signature::Param;

/// The model: a non-generic struct with named fields, its primary key among them.
pub(crate) fn model(input: &DeriveInput, model: &Model, errors: &mut Errors) {
    if !input.generics.params.is_empty() {
        errors.push(
            input.generics.span(),
            "#[derive(Cacheable)] does not support generic models",
        );
    }
    if check_shape(input, errors) {
        check_primary_key(model, errors);
    }
}

/// Whether the input is a struct with named fields; reports it if not.
fn check_shape(input: &DeriveInput, errors: &mut Errors) -> bool {
    let Data::Struct(data) = &input.data else {
        errors.push(input.ident.span(), "#[derive(Cacheable)] needs a struct");
        return false;
    };
    if !matches!(data.fields, Fields::Named(_)) {
        errors.push(
            data.fields.span(),
            "#[derive(Cacheable)] needs named fields",
        );
        return false;
    }
    true
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

/// `#[cached_as]`: `skip` names arguments, and samples that need a backend
/// have one.
pub(crate) fn cached_as(attr: &CachedAsAttr, params: &[Param], errors: &mut Errors) {
    for skip in &attr.skip {
        if !params.iter().any(|p| p.ident == *skip) {
            errors.push(
                skip.span(),
                "`skip` names an argument this function does not have",
            );
        }
    }
    check_backend(attr, errors);
}

/// A query or object sample needs the backend to render or encode it.
fn check_backend(attr: &CachedAsAttr, errors: &mut Errors) {
    if attr.backend.is_some() {
        return;
    }
    for sample in &attr.samples {
        if let Sample::Query(e) | Sample::Object(e) = sample {
            errors.push(
                e.span(),
                "this sample needs its Diesel backend: add `backend = diesel::pg::Pg` (or `diesel::sqlite::Sqlite`) to #[cached_as]",
            );
        }
    }
}
