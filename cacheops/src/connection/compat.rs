//! What Diesel implements per connection type, implemented for
//! [`CachedConnection`] too: `save_changes` and r2d2 pooling.

use diesel::associations::HasTable;
use diesel::expression::{is_aggregate, MixedAggregates, ValidGrouping};
use diesel::query_builder::{AsChangeset, IntoUpdateTarget};
use diesel::query_dsl::{LoadQuery, UpdateAndFetchResults};
use diesel::{QueryResult, RunQueryDsl, Table};

use super::CachedConnection;

/// `save_changes` through a [`CachedConnection`] on PostgreSQL: `UPDATE ...
/// RETURNING`, which the connection sees as a write of the table (table-wide
/// invalidation; `Cacheops::save` is the granular way).
#[cfg(feature = "postgres")]
impl<'b, Changes, Output> UpdateAndFetchResults<Changes, Output>
    for CachedConnection<diesel::pg::PgConnection>
where
    Changes: Copy + AsChangeset<Target = <Changes as HasTable>::Table> + IntoUpdateTarget,
    diesel::dsl::Update<Changes, Changes>: LoadQuery<'b, Self, Output>,
    <Changes::Table as Table>::AllColumns: ValidGrouping<()>,
    <<Changes::Table as Table>::AllColumns as ValidGrouping<()>>::IsAggregate:
        MixedAggregates<is_aggregate::No, Output = is_aggregate::No>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        diesel::update(changeset).set(changeset).get_result(self)
    }
}

/// `save_changes` through a [`CachedConnection`] on SQLite: Diesel's own two
/// statements (UPDATE, then SELECT by primary key); the UPDATE, a plain one, is
/// invalidated granularly like any `execute()` of an UPDATE.
#[cfg(feature = "sqlite")]
impl<'b, Changes, Output> UpdateAndFetchResults<Changes, Output>
    for CachedConnection<diesel::sqlite::SqliteConnection>
where
    Changes: Copy + diesel::Identifiable,
    Changes: AsChangeset<Target = <Changes as HasTable>::Table> + IntoUpdateTarget,
    Changes::Table: diesel::query_dsl::methods::FindDsl<Changes::Id>,
    diesel::dsl::Update<Changes, Changes>: diesel::query_dsl::methods::ExecuteDsl<Self>,
    diesel::dsl::Find<Changes::Table, Changes::Id>: LoadQuery<'b, Self, Output>,
    <Changes::Table as Table>::AllColumns: ValidGrouping<()>,
    <<Changes::Table as Table>::AllColumns as ValidGrouping<()>>::IsAggregate:
        MixedAggregates<is_aggregate::No, Output = is_aggregate::No>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        use diesel::QueryDsl;
        diesel::update(changeset).set(changeset).execute(self)?;
        Changes::table().find(changeset.id()).get_result(self)
    }
}

#[cfg(feature = "r2d2")]
mod pool {
    use diesel::r2d2::{ManageConnection, PooledConnection, R2D2Connection};
    use diesel::QueryResult;

    use super::super::{CacheConnection, Tracked};
    use super::CachedConnection;

    /// Pools of [`CachedConnection`]: `Pool<ConnectionManager<CachedConnection<PgConnection>>>`
    /// (connections made with the process-wide handle, see `Connection::establish`).
    impl<C> R2D2Connection for CachedConnection<C>
    where
        C: CacheConnection + R2D2Connection + diesel::connection::LoadConnection,
    {
        fn ping(&mut self) -> QueryResult<()> {
            self.inner().ping()
        }

        fn is_broken(&mut self) -> bool {
            self.inner().is_broken()
        }
    }

    /// A pooled connection is what it wraps.
    impl<M> CacheConnection for PooledConnection<M>
    where
        M: ManageConnection,
        M::Connection: CacheConnection + R2D2Connection + Send + 'static,
        PooledConnection<M>:
            diesel::Connection<Backend = <M::Connection as diesel::Connection>::Backend>,
    {
        fn __tracked(&mut self) -> Option<&mut Tracked> {
            (**self).__tracked()
        }

        fn __begin_write(&mut self) -> QueryResult<()> {
            (**self).__begin_write()
        }

        fn __statements_read_latest(&mut self) -> bool {
            (**self).__statements_read_latest()
        }

        fn __fills_may_store(&mut self) -> bool {
            (**self).__fills_may_store()
        }
    }
}
