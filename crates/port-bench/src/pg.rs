//! A throw-away PostgreSQL schema per portd instance, in the database named by
//! `PORT_TEST_DATABASE_URL`; dropped after the instance stops (or on drop, if the
//! benchmark fails first).

use anyhow::{Context, Result};
use sqlx::Connection as _;

pub struct Schema {
    base_url: String,
    pub name: String,
    dropped: bool,
}

impl Schema {
    pub async fn create(base_url: &str) -> Result<Self> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(base_url)
            .await
            .context("connecting to PORT_TEST_DATABASE_URL")?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            base_url: base_url.to_owned(),
            name,
            dropped: false,
        })
    }

    /// The database URL with this schema first on the search path.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }

    /// The bytes of the schema's tables and indexes.
    pub async fn size(&self) -> Result<u64> {
        let mut conn = sqlx::PgConnection::connect(&self.base_url).await?;
        let (bytes,): (Option<i64>,) = sqlx::query_as(
            "SELECT SUM(pg_total_relation_size(c.oid))::BIGINT FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok(bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0))
    }

    pub async fn drop_now(mut self) -> Result<()> {
        drop_schema(&self.base_url, &self.name).await?;
        self.dropped = true;
        Ok(())
    }
}

async fn drop_schema(base_url: &str, name: &str) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

impl Drop for Schema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (base_url, name) = (self.base_url.clone(), self.name.clone());
        // Drop cannot await; a thread with its own runtime can.
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(drop_schema(&base_url, &name)))
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            eprintln!("warning: could not drop benchmark schema {}", self.name);
        }
    }
}
