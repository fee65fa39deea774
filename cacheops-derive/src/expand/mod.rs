//! The three macros, each in four steps: read the attributes (`attr/`), check
//! the item (`signature.rs`, `valid.rs`), then emit calls into the runtime or,
//! on any error, the fallback (`fallback.rs`).

mod cacheable;
mod cached;
mod cached_as;
mod wrap;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use syn::{DeriveInput, ItemFn};

use crate::attr;
use crate::ctxt::Errors;
use crate::fallback;
use crate::signature::{self, Param, Rules};
use crate::valid;

pub(crate) use self::wrap::Mode;
pub(crate) use crate::attr::cached::CachedAttr;
pub(crate) use crate::attr::cached_as::CachedAsAttr;

pub(crate) fn cacheable(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let model = attr::model::read(input, &mut errors);
    valid::model(input, &model, &mut errors);
    match errors.into_result() {
        Ok(()) => cacheable::emit(&model),
        Err(e) => fallback::cacheable(&e, input),
    }
}

/// A function attribute: `#[cached]` or `#[cached_as]`.
pub(crate) trait FunctionAttr: Sized {
    const RULES: Rules;
    /// Reads the attribute's arguments (`attr/`).
    fn read(tokens: TokenStream, errors: &mut Errors) -> Self;
    /// Checks the arguments against the signature (`valid.rs`), if anything.
    fn check(&self, _params: &[Param], _errors: &mut Errors) {}
    /// The function wrapped, and its module.
    fn emit(&self, func: &ItemFn, params: &[Param]) -> TokenStream;
    /// The module with stubbed bodies, for the fallback.
    fn stub_module(&self, func: &ItemFn, params: &[Param]) -> TokenStream;
}

/// Both function attributes, step by step: one signature check for both.
pub(crate) fn function<A: FunctionAttr>(attr: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(func) = syn::parse2::<ItemFn>(item.clone()) else {
        return fallback::not_a_function(&A::RULES, item);
    };
    let mut errors = Errors::default();
    let attr = A::read(attr, &mut errors);
    let params = signature::check(&func, &A::RULES, &mut errors);
    attr.check(&params, &mut errors);
    match errors.into_result() {
        Ok(()) => attr.emit(&func, &params),
        Err(e) => fallback::function(&e, &func, || attr.stub_module(&func, &params)),
    }
}
