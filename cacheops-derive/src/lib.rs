//! Derive macros for [cacheops](https://docs.rs/cacheops).
//!
//! This crate only reads attributes and emits calls into the `cacheops` runtime;
//! every decision (profiles, encoding, invalidation) is made there.

extern crate proc_macro;

mod attr;
mod cached_as;
mod expand;

use proc_macro::TokenStream;

/// Makes a Diesel model cacheable. See `cacheops::Cacheable` for the attributes.
#[proc_macro_derive(Cacheable, attributes(cacheops, diesel))]
pub fn derive_cacheable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::cacheable(&input).into()
}

/// Caches a function's result until the queries, objects or models it names
/// change. See `cacheops::cached_as` for the runtime and the attribute's syntax.
#[proc_macro_attribute]
pub fn cached_as(attr: TokenStream, item: TokenStream) -> TokenStream {
    cached_as::expand(attr.into(), item.into()).into()
}
