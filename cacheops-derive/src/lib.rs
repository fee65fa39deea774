//! Derive macros for [cacheops](https://docs.rs/cacheops).
//!
//! This crate only reads attributes and emits calls into the `cacheops` runtime;
//! every decision (profiles, encoding, invalidation) is made there. Where things
//! are (as thiserror's `impl/`):
//!
//! | step | file |
//! |---|---|
//! | read attributes into plain structs | `attr/` (`model.rs`, `cached.rs`, `cached_as.rs`) |
//! | collect every error with its span | `ctxt.rs` |
//! | the function shapes `#[cached]` and `#[cached_as]` accept | `signature.rs` |
//! | other checks of the item as a whole | `valid.rs` |
//! | emit: each macro's steps, the shared body wrapper, each macro's output | `expand/` |
//! | what an error expands to | `fallback.rs` |

extern crate proc_macro;

mod attr;
mod ctxt;
mod expand;
mod fallback;
mod signature;
mod valid;

use proc_macro::TokenStream;

/// Makes a Diesel model cacheable. See `cacheops::Cacheable` for the attributes.
#[proc_macro_derive(Cacheable, attributes(cacheops, diesel))]
pub fn derive_cacheable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::cacheable(&input).into()
}

/// Caches a function's result for a time, keyed by the function and its
/// arguments. See `cacheops::cached` (the attribute is documented there).
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::function::<expand::CachedAttr>(attr.into(), item.into()).into()
}

/// Caches a function's result until the queries, objects or models it names
/// change, and adds a module of the same name with `key(args)`,
/// `invalidate(args)` and `invalidate_using(handle, args)`.
///
/// ```text
/// #[cached_as(articles::table.filter(articles::category_id.eq(cat)),
///             object(author), model(Category), table("tags"),
///             backend = diesel::pg::Pg, timeout = 600, extra = page,
///             handle = cache, skip(trace))]
/// ```
///
/// The syntax is documented with the runtime function `cacheops::cached_as`.
#[proc_macro_attribute]
pub fn cached_as(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::function::<expand::CachedAsAttr>(attr.into(), item.into()).into()
}
