//! A throw-away PostgreSQL schema in a shared database: what tests, the benchmark and the
//! reliability suite run portd in, so that they never touch anything else on the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;

/// A schema of its own in the database `base_url` names. [`ScratchSchema::url`] puts it
/// first on the search path; it is dropped by [`ScratchSchema::drop_now`] or, failing
/// that (a panic, an early return), when the value is dropped.
#[derive(Debug)]
pub struct ScratchSchema {
    base_url: String,
    name: String,
    dropped: bool,
}

impl ScratchSchema {
    /// Creates `<prefix>_<unique suffix>`. `prefix` must be a plain SQL identifier.
    pub async fn create(base_url: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        static CREATED: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "{prefix}_{}_{nanos:x}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(base_url).await?;
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

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL with this schema first on the search path.
    pub fn url(&self) -> String {
        with_search_path(&self.base_url, &self.name)
    }

    pub async fn drop_now(mut self) -> Result<(), sqlx::Error> {
        drop_schema(&self.base_url, &self.name).await?;
        self.dropped = true;
        Ok(())
    }
}

/// `url` with `options=-c search_path=<schema>` added.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

async fn drop_schema(base_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    // A crashed user may leave a transaction holding locks; give up rather than hang.
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (base_url, name) = (self.base_url.clone(), self.name.clone());
        // Drop cannot await; a thread with its own runtime can, even inside a runtime.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_schema(&base_url, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            tracing::warn!(schema = %self.name, "could not drop a scratch schema");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_joins_existing_options() {
        assert_eq!(
            with_search_path("postgres://h/db", "s1"),
            "postgres://h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://h/db?sslmode=disable", "s1"),
            "postgres://h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }
}
