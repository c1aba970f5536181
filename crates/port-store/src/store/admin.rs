//! [`StoreAdmin`]: readiness, integrity, closing, and re-sealing every secret under the
//! current key.

use async_trait::async_trait;
use port_core::ports::StoreResult;
use port_core::secret::{client_secret_context, org_secret_context};

use crate::StoreAdmin;
use crate::db::Sql;

use super::{Backend, BackendKind, SqlStore};

#[async_trait]
impl StoreAdmin for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read_optional(&Sql::new("SELECT 1 AS one"))
            .await
            .map(|_| ())
    }

    async fn integrity_check(&self) -> StoreResult<bool> {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let rows = self.read_all(&Sql::new("PRAGMA integrity_check")).await?;
                // A healthy database answers with a single row, "ok".
                let mut answers = rows.iter().map(|r| r.text("integrity_check"));
                Ok(
                    matches!((answers.next(), answers.next()), (Some(Ok(first)), None) if first == "ok"),
                )
            }
            Backend::Postgres { .. } => {
                self.ping().await?;
                Ok(true)
            }
        }
    }

    async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }

    fn backend(&self) -> BackendKind {
        self.kind()
    }

    fn writer_counters(&self) -> Option<crate::WriterCounters> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Some(writer.counters()),
            Backend::Postgres { .. } => None,
        }
    }

    async fn reseal_secrets(&self) -> StoreResult<u64> {
        let Some(keyring) = &self.keyring else {
            return Ok(0);
        };
        // Cross-organization by nature: a key protects the whole database. One
        // transaction, so a failure (a value no key of the ring opens) leaves every row
        // as it was, and a rotation is never half done.
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let mut changed = 0;
        let credentials = Sql::new(format!(
            "SELECT client_id, client_secret FROM credentials ORDER BY client_id{}",
            self.for_update()
        ));
        for row in conn.fetch_all(&credentials).await? {
            let stored = row.text("client_secret")?;
            if keyring.is_current(&stored) {
                continue;
            }
            let client_id = row.text("client_id")?;
            let context = client_secret_context(&client_id);
            let clear = self.unseal(stored, &context, || {
                format!("the client secret of {client_id}")
            })?;
            let update = Sql::new("UPDATE credentials SET client_secret = $2 WHERE client_id = $1")
                .bind(&client_id)
                .bind(self.seal(&clear, &context));
            changed += conn.execute(&update).await?;
        }
        let secrets = Sql::new(format!(
            "SELECT org_id, name, value FROM org_secrets ORDER BY org_id, name{}",
            self.for_update()
        ));
        for row in conn.fetch_all(&secrets).await? {
            let stored = row.text("value")?;
            if keyring.is_current(&stored) {
                continue;
            }
            let org = row.text("org_id")?;
            let name = row.text("name")?;
            let context = org_secret_context(&org, &name);
            let clear = self.unseal(stored, &context, || {
                format!("secret {name} of organization {org}")
            })?;
            let update =
                Sql::new("UPDATE org_secrets SET value = $3 WHERE org_id = $1 AND name = $2")
                    .bind(&org)
                    .bind(&name)
                    .bind(self.seal(&clear, &context));
            changed += conn.execute(&update).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}
