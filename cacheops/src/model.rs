//! What `#[derive(Cacheable)]` generates, and the registry of models it publishes.
//!
//! The derive only describes the model (label, table, columns, profile) and encodes
//! its column values through [`crate::backend::encode_value`]; every decision is made here
//! and in the rest of the runtime.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::backend::CacheBackend;
use crate::config::{Config, Profile};
use crate::error::{Error, ErrorKind, Result};
use crate::value::{Equality, Value};

/// A model whose queries can be cached and whose rows invalidate them.
///
/// Implemented by `#[derive(Cacheable)]`, next to Diesel's own derives. It reads
/// Diesel's `#[diesel(table_name = ..., primary_key(...))]` and per-field
/// `#[diesel(column_name = ...)]`, and its own attributes:
///
/// | attribute | meaning |
/// |---|---|
/// | `#[cacheops(app = "blog")]` | label `blog.<StructName>` (default app: the crate's name) |
/// | `#[cacheops(label = "blog.Post")]` | the whole label |
/// | `#[cacheops(ops = "get,fetch", timeout = 600)]` | the model's own profile, over `Config` patterns |
/// | `#[cacheops(table = "posts")]` | the SQL table name when `table!` uses `sql_name` |
/// | field `#[cacheops(exact)]` | byte equality is SQL equality for this column (e.g. an opted-in float) |
/// | field `#[cacheops(inexact)]` | never granular (e.g. a case-insensitive collation) |
///
/// ```
/// # use diesel::prelude::*;
/// diesel::table! { tags (id) { id -> Integer, name -> Text } }
///
/// #[derive(Queryable, cacheops::Cacheable, serde::Serialize, serde::Deserialize)]
/// #[diesel(table_name = tags)]
/// #[cacheops(app = "blog", ops = "all", timeout = 60)]
/// struct Tag {
///     id: i32,
///     #[cacheops(inexact)]
///     name: String,
/// }
///
/// use cacheops::Cacheable;
/// assert_eq!(Tag::INFO.label, "blog.Tag");
/// assert_eq!(Tag::INFO.columns, ["id", "name"]);
/// assert_eq!(Tag::INFO.column_equality("name"), cacheops::ColumnEquality::Inexact);
/// ```
///
/// Several row types may derive it on one table (a partial `PostTitle { id, title }`
/// beside `Post`): see [`models_of_table`].
///
/// Unsupported shapes are compile errors: generic structs, enums, tuple structs,
/// embedded fields, a primary key that is not a field, unknown attributes.
///
/// ```compile_fail
/// # use diesel::prelude::*;
/// diesel::table! { tags (id) { id -> Integer } }
/// #[derive(cacheops::Cacheable)]
/// #[diesel(table_name = tags)]
/// struct Tag(i32); // error: #[derive(Cacheable)] needs named fields
/// ```
///
/// ```compile_fail
/// # use diesel::prelude::*;
/// diesel::table! { tags (code) { code -> Text } }
/// #[derive(cacheops::Cacheable)]
/// #[diesel(table_name = tags)]
/// #[cacheops(opz = "all")] // error: unknown cacheops attribute
/// struct Tag { name: String } // error: primary key column `id` is not a field
/// ```
pub trait Cacheable: 'static {
    /// The static description of the model.
    const INFO: &'static ModelInfo;
}

/// A model's row values in the canonical form of backend `DB`.
pub trait CacheRow<DB: CacheBackend>: Cacheable {
    /// The value of every column of [`ModelInfo::columns`], in that order.
    fn row_values(&self) -> Result<Vec<Value>>;
}

/// How a model column compares: decided by the model's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnEquality {
    /// Trust the SQL type (floats, numeric, json... widen; integers, text... are exact).
    ByType,
    /// `#[cacheops(exact)]`: byte equality is SQL equality for this column.
    Exact,
    /// `#[cacheops(inexact)]`: never granular (e.g. a case-insensitive collation).
    Inexact,
}

/// The static description of a cacheable model.
#[derive(Debug)]
pub struct ModelInfo {
    /// `app.Model`, as profiles and the CLI name it.
    pub label: &'static str,
    /// The SQL table name.
    pub table: &'static str,
    /// SQL names of the primary key columns.
    pub primary_key: &'static [&'static str],
    /// SQL names of every column the model holds, in field order.
    pub columns: &'static [&'static str],
    /// Per-column equality overrides, in the order of `columns`.
    pub equality: &'static [ColumnEquality],
    /// Per column, in the order of `columns`, the `std::any::type_name` of its
    /// Diesel SQL type (as `table!` declares it): a condition whose value is of
    /// another kind than the column widens.
    pub sql_types: &'static [fn() -> &'static str],
    /// The profile set by the model's own attribute, if any.
    pub profile: Option<ProfileAttr>,
}

/// A profile written in `#[cacheops(ops = "...", timeout = N)]`, kept as text so
/// the derive stays free of logic; parsed when the model is looked up.
#[derive(Clone, Copy, Debug)]
pub struct ProfileAttr {
    /// Ops, as `Ops::parse` reads them; `None` when only the timeout was given.
    pub ops: Option<&'static str>,
    /// Timeout in seconds, if given.
    pub timeout: Option<u64>,
}

impl ModelInfo {
    /// The model's profile: its own attribute over the configured patterns.
    pub fn profile(&self, config: &crate::Config) -> Result<Option<Profile>> {
        let base = config.profile_for(self.label);
        let Some(attr) = self.profile else {
            return Ok(base);
        };
        let ops = match attr.ops {
            Some(text) => crate::config::Ops::parse(text)?,
            None => base.map_or(crate::config::Ops::NONE, |p| p.ops),
        };
        let timeout = attr
            .timeout
            .map(std::time::Duration::from_secs)
            .or(base.map(|p| p.timeout))
            .unwrap_or(config.timeout);
        Ok(Some(Profile::new(ops, timeout)))
    }

    /// Whether a condition `column = value` may be decided by comparing `value`
    /// with the column's canonical values: `value` is NULL, or of the column's
    /// kind (an `Integer` bind against a `BigInt` column is; text against SQLite's
    /// INTEGER column, which SQLite compares after converting, is not). Columns
    /// the model does not hold, or whose type it cannot tell, trust the value.
    pub fn accepts(&self, column: &str, value: &Value) -> bool {
        use crate::value::{family_of_sql_type, family_of_tag, is_sqlite_tag};
        let Some(sql_type) = self
            .column_index(column)
            .and_then(|i| self.sql_types.get(i))
        else {
            return true;
        };
        if value.is_null() {
            return true;
        }
        let column = family_of_sql_type(sql_type(), is_sqlite_tag(value.ty));
        column.is_some() && column == family_of_tag(value.ty)
    }

    /// Whether the model has `column`.
    pub fn holds(&self, column: &str) -> bool {
        self.column_index(column).is_some()
    }

    /// Whether this model says `column = value` may be decided by byte equality:
    /// its own override, else the value's type and [`ModelInfo::accepts`].
    pub fn decides_exact(&self, column: &str, value: &Value) -> bool {
        match self.column_equality(column) {
            ColumnEquality::Exact => true,
            ColumnEquality::Inexact => false,
            ColumnEquality::ByType => {
                value.equality == crate::value::Equality::Exact && self.accepts(column, value)
            }
        }
    }

    fn column_index(&self, column: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
    }

    /// The equality override of a column, `ByType` for unknown columns.
    pub fn column_equality(&self, column: &str) -> ColumnEquality {
        self.column_index(column)
            .and_then(|i| self.equality.get(i).copied())
            .unwrap_or(ColumnEquality::ByType)
    }
}

inventory::collect!(&'static ModelInfo);

/// Every model compiled into this program, as `#[derive(Cacheable)]` registered them.
pub(crate) fn models() -> impl Iterator<Item = &'static ModelInfo> {
    inventory::iter::<&'static ModelInfo>.into_iter().copied()
}

/// The model of a table, if one is registered: the first by label when several
/// row types read the table (see [`models_of_table`]).
pub(crate) fn model_of_table(table: &str) -> Option<&'static ModelInfo> {
    models_of_table(table).first().copied()
}

/// Every model registered for a table, sorted by label: several row types may
/// read one table (a partial `PostTitle { id, title }` beside `Post`). They share
/// the table's profile (different profiles are refused when the table is first
/// used), each column is described by the models that hold it, and a write
/// through any of them invalidates by the columns it has (a row lacking a
/// condition's column invalidates the whole table).
pub fn models_of_table(table: &str) -> &'static [&'static ModelInfo] {
    static BY_TABLE: LazyLock<HashMap<&'static str, Vec<&'static ModelInfo>>> =
        LazyLock::new(|| {
            let mut by_table: HashMap<&'static str, Vec<&'static ModelInfo>> = HashMap::new();
            for model in models() {
                by_table.entry(model.table).or_default().push(model);
            }
            by_table
                .values_mut()
                .for_each(|m| m.sort_by_key(|m| m.label));
            by_table
        });
    BY_TABLE.get(table).map_or(&[], Vec::as_slice)
}

/// Profiles by table, resolved once per handle: a hit must not parse profile
/// strings.
#[derive(Default)]
pub(crate) struct Profiles {
    by_table: std::sync::RwLock<std::collections::HashMap<&'static str, Profile>>,
}

impl Profiles {
    /// The profile of the model stored in `table`; an error if the table has no
    /// registered model or the model no profile.
    pub(crate) fn of_table(&self, config: &Config, table: &str) -> Result<Profile> {
        let known = self.by_table.read().unwrap_or_else(|e| e.into_inner());
        if let Some(profile) = known.get(table) {
            return Ok(*profile);
        }
        drop(known);
        let (model, profile) = resolve_profile(config, table)?;
        let mut known = self.by_table.write().unwrap_or_else(|e| e.into_inner());
        known.insert(model, profile);
        Ok(profile)
    }
}

fn resolve_profile(config: &Config, table: &str) -> Result<(&'static str, Profile)> {
    let models = models_of_table(table);
    let Some(first) = models.first() else {
        let message = format!("table `{table}` has no #[derive(Cacheable)] model");
        return Err(not_cacheable(message));
    };
    let mut chosen: Option<(&ModelInfo, Profile)> = None;
    for model in models {
        let Some(profile) = model.profile(config)? else {
            continue;
        };
        match chosen {
            Some((other, theirs)) if theirs != profile => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "models `{}` and `{}` of table `{table}` have different cache profiles \
                         ({theirs:?} and {profile:?}): one table has one profile, give them \
                         the same #[cacheops(ops, timeout)] or set it on one of them only",
                        other.label, model.label
                    ),
                ));
            }
            _ => chosen = Some((model, profile)),
        }
    }
    let (_, profile) = chosen.ok_or_else(|| {
        not_cacheable(format!(
            "model `{}` has no cache profile: add #[cacheops(ops = ...)] or a matching Config::profile",
            first.label
        ))
    })?;
    Ok((first.table, profile))
}

fn not_cacheable(message: String) -> Error {
    Error::new(ErrorKind::NotCacheable, message)
}

/// Whether `table.column = value` is decided by byte equality: by every model of
/// the table that holds the column; by the value's type for a table without a
/// model; never for a column the table's models do not describe.
pub(crate) fn column_is_exact(table: &str, column: &str, value: &Value) -> bool {
    let models = models_of_table(table);
    let mut holders = models.iter().filter(|m| m.holds(column)).peekable();
    match holders.peek() {
        // No model: the value's type is all there is to go by.
        None if models.is_empty() => value.equality == Equality::Exact,
        // A column no model describes: its type is unknown, so it widens.
        None => false,
        Some(_) => holders.all(|m| m.decides_exact(column, value)),
    }
}
