//! SQL text → [`Template`]. (Stub: being written.)

use std::sync::Arc;

use super::{Deps, Policy};
use crate::backend::Dialect;
use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;

/// The dependency structure of one SQL text, with binds still unknown.
#[derive(Debug)]
pub struct Template {
    tables: Vec<Arc<str>>,
}

impl Template {
    /// Parses `sql` as rendered by Diesel for `dialect`.
    pub fn parse(sql: &str, dialect: Dialect) -> Result<Template> {
        let _ = (sql, dialect);
        Err(Error::new(ErrorKind::Sql, "not implemented"))
    }

    /// Every table the SQL references anywhere, sorted.
    pub fn tables(&self) -> &[Arc<str>] {
        &self.tables
    }

    /// The first table of the outermost FROM: the model a query is "about".
    pub fn main_table(&self) -> Option<&str> {
        self.tables.first().map(|t| &**t)
    }

    /// The dependencies of one call with these binds.
    pub fn instantiate(&self, binds: &[Value], policy: &Policy<'_>) -> Deps {
        let _ = (binds, policy);
        Deps::default()
    }
}
