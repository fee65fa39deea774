//! Smoke checks of the async path (diesel-async + the async store).

use cacheops::AsyncCachedQueryDsl;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::ctx::*;
use crate::fixtures::pg::*;

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test]
async fn pg_redis_second_read_is_a_hit() {
    let db = PgDb::open();
    seed(&mut db.connect(), 3, 4);
    let cache = handle(StoreKind::Redis, &unique("cacheops_async"));
    let url = format!("{}?options=-csearch_path%3D{}", database_url(), db.schema);
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    for hits in [0, 1] {
        let rows: Vec<Article> = assert_send(
            articles::table
                .filter(articles::category_id.eq(2))
                .cache_async()
                .using(&cache)
                .load(&mut conn),
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(cache.stats().hits, hits);
    }
    cache.invalidate_all().unwrap();
}
