//! `#[derive(Cacheable)]`: the `Cacheable` and `CacheRow` impls, descriptions
//! and calls into the `cacheops` runtime, nothing more.

use crate::attr::model::{Field, Model};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

pub(crate) fn emit(model: &Model) -> TokenStream {
    let info = model_info(model);
    let row = cache_row(model);
    quote! { #info #row }
}

fn column_path(model: &Model, column: &syn::Ident) -> TokenStream {
    let table = &model.table;
    quote! { #table::#column }
}

fn model_info(model: &Model) -> TokenStream {
    let ident = &model.ident;
    let table_name = &model.table_name;
    let label = label(model);
    let columns = model.fields.iter().map(|f| {
        let path = column_path(model, &f.column);
        quote! { <#path as ::cacheops::__private::diesel::Column>::NAME }
    });
    let keys = model.primary_key.iter().map(|k| {
        let path = column_path(model, k);
        quote! { <#path as ::cacheops::__private::diesel::Column>::NAME }
    });
    let equality = model.fields.iter().map(|f| match f.exact {
        Some(true) => quote! { ::cacheops::ColumnEquality::Exact },
        Some(false) => quote! { ::cacheops::ColumnEquality::Inexact },
        None => quote! { ::cacheops::ColumnEquality::ByType },
    });
    let sql_types = model.fields.iter().map(|f| {
        let path = column_path(model, &f.column);
        quote! {
            ::std::any::type_name::<<#path as ::cacheops::__private::diesel::Expression>::SqlType>
                as fn() -> &'static str
        }
    });
    let profile = profile(model);
    quote! {
        impl ::cacheops::Cacheable for #ident {
            const INFO: &'static ::cacheops::ModelInfo = &::cacheops::ModelInfo {
                label: #label,
                table: #table_name,
                primary_key: &[#(#keys),*],
                columns: &[#(#columns),*],
                equality: &[#(#equality),*],
                sql_types: &[#(#sql_types),*],
                profile: #profile,
            };
        }
        ::cacheops::__private::inventory::submit! {
            <#ident as ::cacheops::Cacheable>::INFO
        }
    }
}

/// `app.Model`: an explicit label, else `app` (default: the crate's name) + struct name.
fn label(model: &Model) -> TokenStream {
    if let Some(label) = &model.label {
        return quote! { #label };
    }
    let name = model.ident.to_string();
    match &model.app {
        Some(app) => {
            let label = format!("{app}.{name}");
            quote! { #label }
        }
        None => quote! { ::core::concat!(::core::env!("CARGO_CRATE_NAME"), ".", #name) },
    }
}

fn profile(model: &Model) -> TokenStream {
    if model.ops.is_none() && model.timeout.is_none() {
        return quote! { ::core::option::Option::None };
    }
    let ops = match &model.ops {
        Some(ops) => quote! { ::core::option::Option::Some(#ops) },
        None => quote! { ::core::option::Option::None },
    };
    let timeout = match model.timeout {
        Some(secs) => quote! { ::core::option::Option::Some(#secs) },
        None => quote! { ::core::option::Option::None },
    };
    quote! { ::core::option::Option::Some(::cacheops::__private::ProfileAttr { ops: #ops, timeout: #timeout }) }
}

fn cache_row(model: &Model) -> TokenStream {
    let ident = &model.ident;
    let db = format_ident!("__DB");
    let sql_type = |f: &Field| {
        let path = column_path(model, &f.column);
        quote! { <#path as ::cacheops::__private::diesel::Expression>::SqlType }
    };
    let bounds = model.fields.iter().map(|f| {
        let (ty, st) = (&f.ty, sql_type(f));
        quote! {
            #db: ::cacheops::__private::diesel::sql_types::HasSqlType<#st>,
            #ty: ::cacheops::__private::diesel::serialize::ToSql<#st, #db>,
        }
    });
    let values = model.fields.iter().map(|f| {
        let (member, st) = (&f.member, sql_type(f));
        quote! { ::cacheops::__private::encode_value::<#db, #st, _>(&self.#member)? }
    });
    quote! {
        impl<#db> ::cacheops::CacheRow<#db> for #ident
        where
            #db: ::cacheops::CacheBackend,
            #(#bounds)*
        {
            fn row_values(&self) -> ::cacheops::Result<::std::vec::Vec<::cacheops::Value>> {
                ::core::result::Result::Ok(::std::vec![#(#values),*])
            }
        }
    }
}
