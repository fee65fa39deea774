//! Attributes read into plain structs. Reading checks only what one attribute
//! says on its own (a key is known, a value has the right kind); what needs the
//! item as a whole is checked in `valid.rs` and `signature.rs`.

pub(crate) mod cached;
pub(crate) mod cached_as;
pub(crate) mod model;

use syn::meta::ParseNestedMeta;
use syn::Ident;

/// The key of `key = value` or `key(...)`, or "" for a path such as `a::b`
/// (which matches no key and so is reported as unknown).
fn meta_key(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map(Ident::to_string)
        .unwrap_or_default()
}
