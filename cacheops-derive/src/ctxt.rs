//! Errors gathered while reading and checking, reported together (serde_derive's
//! `Ctxt`): a user with three mistakes sees three errors in one build.

use proc_macro2::Span;

/// Every error found so far, each with its span.
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

    /// A parse error, re-spanned at its first token (as every error here is).
    pub(crate) fn push_syn(&mut self, error: syn::Error) {
        self.push(error.span(), error);
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}
