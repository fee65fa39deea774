//! Which functions `#[cached]` and `#[cached_as]` accept: one set of rules for
//! both, since both wrap the body in a closure and add a sibling module whose
//! `key(args)` takes the arguments again.
//!
//! - blocking or `async` (the body of an `async fn` becomes a future the
//!   runtime awaits), but not `const` (it calls the runtime);
//! - no type or const parameters: every instance would share one key, and the
//!   module could not name them (lifetimes are fine);
//! - no `self`: the module cannot go in an `impl` block;
//! - each argument a plain name (`x` or `mut x`) of a named type, not a pattern
//!   or `impl Trait`: each is part of the key, passed again to `key(args)`;
//! - a return type, which must be `Result<T, E>` with `E: From<cacheops::Error>`.

use syn::spanned::Spanned;
use syn::{
    FnArg, GenericParam, Generics, Ident, ItemFn, Pat, PatType, ReturnType, Signature, Type,
};

use crate::ctxt::Errors;

/// A function attribute: its name in messages, and how it checks the return type.
pub(crate) struct Rules {
    pub(crate) name: &'static str,
    /// `#[cached]` checks by name that the return type is a `...Result`.
    /// `#[cached_as]` leaves the return type to the compiler (`assert_fn_result`,
    /// whose message states the rule and which sees through type aliases); its UI
    /// snapshots show that error, so it keeps it.
    pub(crate) result_by_name: bool,
}

pub(crate) const CACHED: Rules = Rules {
    name: "#[cached]",
    result_by_name: true,
};

pub(crate) const CACHED_AS: Rules = Rules {
    name: "#[cached_as]",
    result_by_name: false,
};

/// An argument with a plain name: each is part of the key (unless the attribute
/// leaves it out).
pub(crate) struct Param {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// Checks the function against the rules, reporting each breach; returns the
/// arguments that have a name (all of them, once the rules hold).
pub(crate) fn check(func: &ItemFn, rules: &Rules, errors: &mut Errors) -> Vec<Param> {
    let sig = &func.sig;
    check_qualifiers(sig, rules, errors);
    check_generics(&sig.generics, rules, errors);
    check_output(sig, rules, errors);
    sig.inputs
        .iter()
        .filter_map(|arg| param(arg, rules, errors))
        .collect()
}

fn check_qualifiers(sig: &Signature, rules: &Rules, errors: &mut Errors) {
    if let Some(token) = &sig.constness {
        errors.push(
            token.span(),
            format!("{} does not support const functions", rules.name),
        );
    }
}

fn check_generics(generics: &Generics, rules: &Rules, errors: &mut Errors) {
    let typed = generics
        .params
        .iter()
        .any(|p| !matches!(p, GenericParam::Lifetime(_)));
    if typed {
        errors.push(
            generics.span(),
            format!(
                "{} does not support generic functions (the key module could not name the types)",
                rules.name
            ),
        );
    }
}

fn check_output(sig: &Signature, rules: &Rules, errors: &mut Errors) {
    let span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) if rules.result_by_name && !named_result(ty) => ty.span(),
        ReturnType::Type(..) => return,
    };
    errors.push(
        span,
        format!(
            "a {} function must return `Result<T, E>` with `E: From<cacheops::Error>`",
            rules.name
        ),
    );
}

/// `Result<..>`, `cacheops::Result<..>`, `io::Result<..>`, `AppResult<..>`...
fn named_result(ty: &Type) -> bool {
    let Type::Path(path) = ty else {
        return false;
    };
    let last = path.path.segments.last();
    last.is_some_and(|s| s.ident.to_string().ends_with("Result"))
}

fn param(arg: &FnArg, rules: &Rules, errors: &mut Errors) -> Option<Param> {
    let typed = match arg {
        FnArg::Typed(typed) => typed,
        FnArg::Receiver(receiver) => {
            errors.push(
                receiver.span(),
                format!(
                    "{} does not support methods; write a free function taking the value",
                    rules.name
                ),
            );
            return None;
        }
    };
    let param = plain_name(typed, rules, errors)?;
    if let Type::ImplTrait(ty) = &param.ty {
        errors.push(
            ty.span(),
            format!(
                "{} does not support `impl Trait` arguments; name the type",
                rules.name
            ),
        );
    }
    Some(param)
}

/// The argument's name, if it has one. `ref x` and `x @ ..` have one but are
/// not plain names: reported, and still returned for the fallback's module.
fn plain_name(typed: &PatType, rules: &Rules, errors: &mut Errors) -> Option<Param> {
    let message = format!("{} needs plain argument names, not patterns", rules.name);
    let Pat::Ident(pat) = &*typed.pat else {
        errors.push(typed.pat.span(), message);
        return None;
    };
    if pat.by_ref.is_some() || pat.subpat.is_some() {
        errors.push(pat.span(), message);
    }
    Some(Param {
        ident: pat.ident.clone(),
        ty: (*typed.ty).clone(),
    })
}

/// Whether the function takes `self`: then it is in an `impl` block, where no
/// module can go, so the fallback adds none.
pub(crate) fn is_method(func: &ItemFn) -> bool {
    func.sig.receiver().is_some()
}
