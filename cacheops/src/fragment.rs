//! Template fragments cached with [minijinja](https://docs.rs/minijinja): rendered
//! only on a miss, invalidated like the queries or models they show.
//!
//! minijinja has no custom block tags, but a call block passes its body to the
//! called function as `caller`; the functions [`register`] adds call it only when
//! the cache misses:
//!
//! ```jinja
//! {% call cached_as(articles, timeout=600, extra=page) %}
//!   {% for a in articles_list %}<li>{{ a.title }}</li>{% endfor %}
//! {% endcall %}
//! {% call cached(timeout=60) %}{{ slow_sidebar() }}{% endcall %}
//! ```
//!
//! `cached_as` takes one or more dependency values the application put into the
//! context ([`deps`], [`model`]); `cached` caches for a time only. `timeout` is in
//! seconds (default: the configuration's timeout); `extra` is any value, added to
//! the key.
//!
//! # Fragment keys
//! A fragment's key must differ from every other fragment's, yet minijinja does
//! not tell a function where it was called from. So templates go through
//! [`prepare`] (done by [`add_template`] and [`loader`]), which gives each
//! `{% call cached_as(` / `{% call cached(` an identity as a first argument: the
//! template name, the tag's byte offset and a hash of the template source (an
//! edited template starts with fresh keys). The key hashes that identity, the
//! `extra` value and, for `cached_as`, the dependencies, so the same fragment of a
//! category page is cached once per category. A template added without
//! `prepare` fails to render a cached fragment, with a message saying so.
//! Only the default `{% %}` delimiters are recognised.
//!
//! The rendered text is stored as is and emitted as safe (already escaped) text.

use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Rest};
use minijinja::{Environment, ErrorKind as JinjaErrorKind, State, Value};

use crate::cached_as::{through, union, Sample};
use crate::codec;
use crate::deps::{Deps, TableDeps};
use crate::error::{Error, Result};
use crate::model::Cacheable;
use crate::protocol::key::KeyHasher;
use crate::runtime::Cacheops;

/// Marks the identity argument [`prepare`] inserts.
const ID_PREFIX: &str = "cacheops-fragment:";

/// Adds the `cached_as` and `cached` functions, caching in `handle`.
///
/// ```
/// let cache = cacheops::Cacheops::new(cacheops::Config::builder().url("memory://").build())?;
/// let mut env = minijinja::Environment::new();
/// cacheops::fragment::register(&mut env, &cache);
/// cacheops::fragment::add_template(&mut env, "hi.html", "{% call cached(timeout=5) %}hi{% endcall %}")?;
/// assert_eq!(env.get_template("hi.html")?.render(())?, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn register(env: &mut Environment<'_>, handle: &Cacheops) {
    let h = handle.clone();
    env.add_function(
        "cached_as",
        move |state: &mut State, args: Rest<Value>, kwargs: Kwargs| {
            cached_as_fragment(&h, state, &args, &kwargs)
        },
    );
    let h = handle.clone();
    env.add_function(
        "cached",
        move |state: &mut State, args: Rest<Value>, kwargs: Kwargs| {
            cached_fragment(&h, state, &args, &kwargs)
        },
    );
}

/// Adds a template after [`prepare`]-ing it.
pub fn add_template(
    env: &mut Environment<'_>,
    name: &str,
    source: &str,
) -> std::result::Result<(), minijinja::Error> {
    env.add_template_owned(name.to_owned(), prepare(name, source))
}

/// Wraps a template loader (e.g. `minijinja::path_loader("templates")`) so that
/// every template it loads is [`prepare`]d.
pub fn loader<F>(
    inner: F,
) -> impl Fn(&str) -> std::result::Result<Option<String>, minijinja::Error> + Send + Sync + 'static
where
    F: Fn(&str) -> std::result::Result<Option<String>, minijinja::Error> + Send + Sync + 'static,
{
    move |name| Ok(inner(name)?.map(|source| prepare(name, &source)))
}

/// The dependencies of `samples`, as a value to put into a template's context
/// for `cached_as`. Queries are analysed with `handle`.
pub fn deps(handle: &Cacheops, samples: &[Sample<'_>]) -> Result<Value> {
    Ok(Value::from_object(FragmentDeps(
        handle.resolve_samples(samples)?,
    )))
}

/// Every row of model `M`, as a value for `cached_as`.
pub fn model<M: Cacheable>() -> Value {
    let table = (Arc::from(M::INFO.table), TableDeps::Any);
    Value::from_object(FragmentDeps(Some(Deps {
        tables: vec![table],
    })))
}

/// Dependencies held by a template value; `None` when a query could not be
/// analysed (the fragment is then rendered every time).
#[derive(Debug)]
struct FragmentDeps(Option<Deps>);

impl Object for FragmentDeps {}

/// Gives every cached call block of `source` its identity (see the module docs).
///
/// ```
/// let out = cacheops::fragment::prepare("a.html", "{% call cached() %}x{% endcall %}");
/// assert!(out.starts_with(r#"{% call cached("cacheops-fragment:a.html#0#"#));
/// ```
pub fn prepare(name: &str, source: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(source.as_bytes());
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = 0;
    for (tag, insert_at) in cached_calls(source) {
        out.push_str(&source[rest..insert_at]);
        let id = format!("{ID_PREFIX}{name}#{tag}#{hash:016x}");
        out.push_str(&string_literal(&id));
        if !source[insert_at..].trim_start().starts_with(')') {
            out.push_str(", ");
        }
        rest = insert_at;
    }
    out.push_str(&source[rest..]);
    out
}

/// `(offset of the tag, offset just after its opening parenthesis)` of every
/// `{% call cached_as(` and `{% call cached(`, skipping comments and raw blocks.
fn cached_calls(source: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = source[at..].find('{').map(|p| p + at) {
        let after = &source[pos..];
        at = if after.starts_with("{#") {
            skip_past(source, pos, "#}")
        } else if let Some(body) = after.strip_prefix("{%") {
            match tag_words(body) {
                Some(("raw", _)) => skip_past(source, pos, "endraw"),
                Some(("call", paren)) => {
                    if let Some(open) = paren {
                        found.push((pos, pos + 2 + open));
                    }
                    pos + 2
                }
                _ => pos + 2,
            }
        } else {
            pos + 1
        };
    }
    found
}

fn skip_past(source: &str, from: usize, end: &str) -> usize {
    source[from..]
        .find(end)
        .map_or(source.len(), |p| from + p + end.len())
}

/// The first word of a tag body and, for `call cached_as(` / `call cached(`, the
/// offset just after the parenthesis (relative to `body`).
fn tag_words(body: &str) -> Option<(&str, Option<usize>)> {
    let trimmed = body.trim_start_matches(['-', '+']).trim_start();
    let word_len = trimmed
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(trimmed.len());
    let word = &trimmed[..word_len];
    if word != "call" {
        return Some((word, None));
    }
    let after_call = &trimmed[word_len..];
    let callee = after_call.trim_start();
    let name_len = callee
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(callee.len());
    let paren = matches!(&callee[..name_len], "cached_as" | "cached")
        .then(|| callee[name_len..].trim_start())
        .filter(|rest| rest.starts_with('('))
        .map(|rest| body.len() - rest.len() + 1);
    Some(("call", paren))
}

fn string_literal(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// `{% call cached_as(deps..., timeout=, extra=) %}`.
fn cached_as_fragment(
    handle: &Cacheops,
    state: &mut State,
    args: &[Value],
    kwargs: &Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let (id, rest) = split_id(args)?;
    if rest.is_empty() {
        return Err(usage("cached_as needs at least one dependency value"));
    }
    let mut parts = Vec::with_capacity(rest.len());
    for value in rest {
        match value.downcast_object_ref::<FragmentDeps>() {
            Some(FragmentDeps(Some(deps))) => parts.push(deps.clone()),
            Some(FragmentDeps(None)) => return render_uncached(state, kwargs),
            None => {
                return Err(usage(
                    "cached_as takes values made by cacheops::fragment::deps or fragment::model",
                ))
            }
        }
    }
    let deps = union(parts, handle.config().max_conjunctions);
    render(handle, state, kwargs, ("cached_as", id), deps)
}

/// `{% call cached(timeout=, extra=) %}`: time-only, no dependency.
fn cached_fragment(
    handle: &Cacheops,
    state: &mut State,
    args: &[Value],
    kwargs: &Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let (id, rest) = split_id(args)?;
    if !rest.is_empty() {
        return Err(usage(
            "cached takes keyword arguments only (timeout, extra)",
        ));
    }
    render(handle, state, kwargs, ("cached", id), Deps::default())
}

/// The identity [`prepare`] inserted, and the other positional arguments.
fn split_id(args: &[Value]) -> std::result::Result<(&str, &[Value]), minijinja::Error> {
    match args.split_first() {
        Some((first, rest)) => match first.as_str() {
            Some(id) if id.starts_with(ID_PREFIX) => Ok((id, rest)),
            _ => Err(not_prepared()),
        },
        None => Err(not_prepared()),
    }
}

/// The body, through the cache under the fragment's key.
fn render(
    handle: &Cacheops,
    state: &mut State,
    kwargs: &Kwargs,
    (kind, id): (&str, &str),
    deps: Deps,
) -> std::result::Result<Value, minijinja::Error> {
    let caller: Value = kwargs.get("caller")?;
    let timeout: Option<u64> = kwargs.get("timeout")?;
    let extra: Option<Value> = kwargs.get("extra")?;
    kwargs.assert_all_used()?;
    let key = fragment_key(kind, id, extra.as_ref(), &deps).map_err(jinja_error)?;
    let timeout = timeout.map(std::time::Duration::from_secs);
    let plan = handle.plan_for(key, Some(deps), timeout, false);
    let body = || caller.call(state, &[]).map(|v| v.to_string());
    let rendered = through(handle, plan, body, jinja_error)?;
    Ok(Value::from_safe_string(rendered))
}

/// A fragment whose dependencies are unknown: rendered every time.
fn render_uncached(
    state: &mut State,
    kwargs: &Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let caller: Value = kwargs.get("caller")?;
    let _: Option<u64> = kwargs.get("timeout")?;
    let _: Option<Value> = kwargs.get("extra")?;
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(
        caller.call(state, &[])?.to_string(),
    ))
}

fn fragment_key(
    kind: &str,
    id: &str,
    extra: Option<&Value>,
    deps: &Deps,
) -> Result<crate::store::CacheKey> {
    let extra = match extra {
        Some(value) => codec::encode(value)?,
        None => Vec::new(),
    };
    let mut hasher = KeyHasher::new("fragment", kind);
    hasher.bytes(id.as_bytes()).bytes(&extra);
    hash_deps(&mut hasher, deps);
    Ok(hasher.finish())
}

/// Feeds `deps` to the key in their canonical order, every part length-prefixed.
fn hash_deps(hasher: &mut KeyHasher, deps: &Deps) {
    for (table, table_deps) in &deps.tables {
        hasher.bytes(table.as_bytes());
        match table_deps {
            TableDeps::Any => hasher.bytes(b"*"),
            TableDeps::Conjs(conjs) => hasher.bytes(&(conjs.len() as u64).to_le_bytes()),
        };
        for conj in deps_conjs(table_deps) {
            hasher.bytes(&(conj.0.len() as u64).to_le_bytes());
            for (column, value) in &conj.0 {
                hasher
                    .bytes(column.as_bytes())
                    .binds(std::slice::from_ref(value));
            }
        }
    }
}

fn deps_conjs(deps: &TableDeps) -> &[crate::deps::Conj] {
    match deps {
        TableDeps::Any => &[],
        TableDeps::Conjs(conjs) => conjs,
    }
}

fn usage(message: &str) -> minijinja::Error {
    minijinja::Error::new(JinjaErrorKind::InvalidOperation, message.to_owned())
}

fn not_prepared() -> minijinja::Error {
    usage("this template was not prepared for cached fragments: add it with cacheops::fragment::add_template or load it through cacheops::fragment::loader")
}

fn jinja_error(e: Error) -> minijinja::Error {
    minijinja::Error::new(JinjaErrorKind::InvalidOperation, "cacheops failed").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_tags_each_cached_call_and_nothing_else() {
        let src = r#"{% call cached_as(d, timeout=5) %}a{% endcall %}{%- call  cached () -%}b{% endcall %}{% call other() %}{% endcall %}{# {% call cached() %} #}{% raw %}{% call cached() %}{% endraw %}"#;
        let out = prepare("t\"x", src);
        let ids: Vec<_> = out.match_indices(ID_PREFIX).collect();
        assert_eq!(ids.len(), 2, "{out}");
        assert!(
            out.contains(r#"cached_as("cacheops-fragment:t\"x#0#"#),
            "{out}"
        );
        assert!(out.contains(r#"", d, timeout=5)"#), "{out}");
        assert!(
            out.contains(r#"cached ("cacheops-fragment:t\"x#48#"#),
            "{out}"
        );
        assert!(out.contains(r#"")"#), "{out}");
    }

    #[test]
    fn fragments_render_once_and_unprepared_templates_fail_clearly() {
        let cache = Cacheops::new(crate::Config::builder().url("memory://").build()).unwrap();
        let mut env = Environment::new();
        register(&mut env, &cache);
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = runs.clone();
        env.add_function("tick", move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        });
        let src = "{% call cached() %}{{ tick() }}{% endcall %}|{% call cached() %}{{ tick() }}{% endcall %}";
        add_template(&mut env, "t", src).unwrap();
        let render = || env.get_template("t").unwrap().render(()).unwrap();
        assert_eq!(render(), "0|1");
        assert_eq!(render(), "0|1");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        env.add_template("raw", "{% call cached() %}x{% endcall %}")
            .unwrap();
        let err = env.get_template("raw").unwrap().render(()).unwrap_err();
        assert!(format!("{err:#}").contains("not prepared"), "{err:#}");
    }
}
