//! The PostgreSQL side of the benchmark: portd instances run in a
//! `port_store::ScratchSchema` of the database named by `PORT_TEST_DATABASE_URL`, dropped
//! after the instance stops (or on drop, if the benchmark fails first).

use anyhow::{Context, Result};
use port_store::ScratchSchema;
use sqlx::Connection as _;

/// Creates the schema for one portd instance.
pub async fn create_schema(base_url: &str) -> Result<ScratchSchema> {
    ScratchSchema::create(base_url, "bench")
        .await
        .context("creating a schema in PORT_TEST_DATABASE_URL")
}

/// The bytes of the schema's tables and indexes.
pub async fn size(base_url: &str, schema: &ScratchSchema) -> Result<u64> {
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    let (bytes,): (Option<i64>,) = sqlx::query_as(
        "SELECT SUM(pg_total_relation_size(c.oid))::BIGINT FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(schema.name())
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0))
}
