//! Organizations and their credentials, integrations and secrets (client and
//! organization secrets sealed with the keyring on write, opened on read).

use async_trait::async_trait;
use port_core::access::Email;
use port_core::error::StoreError;
use port_core::id::{IntegrationIdentifier, OrgId};
use port_core::integration::Integration;
use port_core::ports::{
    Credential, IntegrationStore, OrgSecret, OrgStore, Organization, SecretStore, StoreResult,
};
use port_core::secret::{SecretName, SecretValue, client_secret_context, org_secret_context};
use port_core::time::Timestamp;
use serde_json::{Map, Value};

use crate::codec;
use crate::db::{Row, Sql, from_i64, taken};

use super::{SqlStore, parse_col, rows};

/// What `credential_from_row` reads.
const CREDENTIAL_COLUMNS: &str = "client_id, org_id, client_secret, created_at, user_email";

fn organization_from_row(row: &Row) -> StoreResult<Organization> {
    Ok(Organization {
        id: parse_col(row, "org_id")?,
        name: row.text("name")?,
        created_at: row.timestamp("created_at")?,
    })
}

#[async_trait]
impl OrgStore for SqlStore {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()> {
        let sql =
            Sql::new("INSERT INTO organizations (org_id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&org.id)
                .bind(&org.name)
                .bind(org.created_at);
        self.write_one(sql)
            .await
            .map_err(taken(|| format!("organization {}", org.id)))?;
        Ok(())
    }

    async fn get_organization(&self, org: &OrgId) -> StoreResult<Option<Organization>> {
        let sql = Sql::new("SELECT org_id, name, created_at FROM organizations WHERE org_id = $1")
            .bind(org);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(organization_from_row)
            .transpose()
    }

    async fn add_credential(&self, credential: &Credential) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut conn = tx.conn();
        let org =
            Sql::new("SELECT org_id FROM organizations WHERE org_id = $1").bind(&credential.org_id);
        if conn.fetch_optional(&org).await?.is_none() {
            return Err(StoreError::Other(format!(
                "organization {} does not exist",
                credential.org_id
            )));
        }
        if let Some(user) = &credential.user {
            // A personal credential needs its user; the lock keeps a concurrent
            // `delete_user` (which deletes the user first, then their credentials) from
            // leaving this one behind.
            let sql = Sql::new(format!(
                "SELECT email FROM users WHERE org_id = $1 AND email = $2{}",
                self.key_share()
            ))
            .bind(&credential.org_id)
            .bind(user.as_str());
            if conn.fetch_optional(&sql).await?.is_none() {
                return Err(StoreError::InvalidInput(format!(
                    "{user} is not a user of the organization"
                )));
            }
        }
        let sql = Sql::new(format!(
            "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&credential.client_id)
        .bind(&credential.org_id)
        .bind(self.seal(
            credential.client_secret.expose(),
            &client_secret_context(&credential.client_id),
        ))
        .bind(credential.created_at)
        .bind(credential.user.as_ref().map(Email::as_str));
        // The message names no value: the row holds a secret.
        conn.execute(&sql)
            .await
            .map_err(taken(|| "credential".to_owned()))?;
        tx.commit().await
    }

    async fn find_credential(&self, client_id: &str) -> StoreResult<Option<Credential>> {
        let sql = Sql::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE client_id = $1"
        ))
        .bind(client_id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(|row| self.credential_from_row(row))
            .transpose()
    }

    async fn credentials(&self, org: &OrgId) -> StoreResult<Vec<Credential>> {
        let sql = Sql::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE org_id = $1 \
             ORDER BY created_at, client_id"
        ))
        .bind(org);
        rows(self.read_all(&sql).await?, |row| {
            self.credential_from_row(row)
        })
    }

    async fn count_credentials(&self) -> StoreResult<u64> {
        let row = self
            .read_optional(&Sql::new("SELECT COUNT(*) AS n FROM credentials"))
            .await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }

    async fn delete_credential(&self, org: &OrgId, client_id: &str) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM credentials WHERE org_id = $1 AND client_id = $2")
            .bind(org)
            .bind(client_id);
        Ok(self.write_one(sql).await? > 0)
    }

    async fn organization_settings(&self, org: &OrgId) -> StoreResult<Option<Map<String, Value>>> {
        let sql = Sql::new("SELECT settings FROM organizations WHERE org_id = $1").bind(org);
        self.read_optional(&sql)
            .await?
            .map(|row| codec::object_from_text(&row.text("settings")?, "organization settings"))
            .transpose()
    }

    async fn update_organization(
        &self,
        org: &OrgId,
        name: Option<&str>,
        settings: Option<&Map<String, Value>>,
    ) -> StoreResult<bool> {
        // Absent parts keep their stored value.
        let sql = Sql::new(
            "UPDATE organizations SET name = COALESCE($2, name), settings = COALESCE($3, settings) \
             WHERE org_id = $1",
        )
        .bind(org)
        .bind(name)
        .bind(settings.map(|s| Value::Object(s.clone()).to_string()));
        Ok(self.write_one(sql).await? > 0)
    }
}

const INTEGRATION_COLUMNS: &str =
    "org_id, identifier, document, created_at, created_by, updated_at, updated_by";

fn integration_from_row(row: &Row) -> StoreResult<Integration> {
    Ok(Integration {
        org_id: parse_col(row, "org_id")?,
        identifier: parse_col(row, "identifier")?,
        document: codec::object_from_text(&row.text("document")?, "integration")?,
        created_at: row.timestamp("created_at")?,
        created_by: row.text("created_by")?,
        updated_at: row.timestamp("updated_at")?,
        updated_by: row.text("updated_by")?,
    })
}

#[async_trait]
impl IntegrationStore for SqlStore {
    async fn create_integration(&self, integration: &Integration) -> StoreResult<()> {
        let sql = Sql::new(format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&integration.org_id)
        .bind(&integration.identifier)
        .bind(Value::Object(integration.document.clone()).to_string())
        .bind(integration.created_at)
        .bind(&integration.created_by)
        .bind(integration.updated_at)
        .bind(&integration.updated_by);
        self.write_one(sql)
            .await
            .map_err(taken(|| format!("integration {}", integration.identifier)))?;
        Ok(())
    }

    async fn get_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<Option<Integration>> {
        let sql = Sql::new(format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE org_id = $1 AND identifier = $2"
        ))
        .bind(org)
        .bind(id);
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(integration_from_row)
            .transpose()
    }

    async fn update_integration(&self, integration: &Integration) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE integrations SET document = $3, updated_at = $4, updated_by = $5 \
             WHERE org_id = $1 AND identifier = $2",
        )
        .bind(&integration.org_id)
        .bind(&integration.identifier)
        .bind(Value::Object(integration.document.clone()).to_string())
        .bind(integration.updated_at)
        .bind(&integration.updated_by);
        Ok(self.write_one(sql).await? > 0)
    }

    async fn delete_integration(
        &self,
        org: &OrgId,
        id: &IntegrationIdentifier,
    ) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM integrations WHERE org_id = $1 AND identifier = $2")
            .bind(org)
            .bind(id);
        Ok(self.write_one(sql).await? > 0)
    }

    async fn count_integrations(&self, org: &OrgId) -> StoreResult<u64> {
        let sql = Sql::new("SELECT COUNT(*) AS n FROM integrations WHERE org_id = $1").bind(org);
        let row = self.read_optional(&sql).await?;
        from_i64(row.map_or(Ok(0), |r| r.i64("n"))?, "count")
    }
}

const SECRET_COLUMNS: &str = "org_id, name, description, created_at, updated_at";

fn secret_name_col(row: &Row) -> StoreResult<SecretName> {
    SecretName::parse(&row.text("name")?)
        .map_err(|_| StoreError::Other("column name holds an invalid secret name".into()))
}

fn org_secret_from_row(row: &Row) -> StoreResult<OrgSecret> {
    Ok(OrgSecret {
        org_id: parse_col(row, "org_id")?,
        name: secret_name_col(row)?,
        description: row.opt_text("description")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn create_secret(&self, secret: &OrgSecret, value: &SecretValue) -> StoreResult<()> {
        let sealed = self.seal(
            value.expose(),
            &org_secret_context(secret.org_id.as_str(), secret.name.as_str()),
        );
        let sql = Sql::new(format!(
            "INSERT INTO org_secrets ({SECRET_COLUMNS}, value) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&secret.org_id)
        .bind(secret.name.as_str())
        .bind(secret.description.as_deref())
        .bind(secret.created_at)
        .bind(secret.updated_at)
        .bind(sealed);
        // The message names the secret, never its value.
        self.write_one(sql)
            .await
            .map_err(taken(|| format!("secret {}", secret.name)))?;
        Ok(())
    }

    async fn update_secret(
        &self,
        org: &OrgId,
        name: &SecretName,
        value: Option<&SecretValue>,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<OrgSecret>> {
        let sealed =
            value.map(|v| self.seal(v.expose(), &org_secret_context(org.as_str(), name.as_str())));
        // Absent parts keep their stored value.
        let sql = Sql::new(format!(
            "UPDATE org_secrets SET value = COALESCE($3, value), \
             description = COALESCE($4, description), updated_at = $5 \
             WHERE org_id = $1 AND name = $2 RETURNING {SECRET_COLUMNS}"
        ))
        .bind(org)
        .bind(name.as_str())
        .bind(sealed)
        .bind(description)
        .bind(at);
        let mut tx = self.begin().await?;
        let row = tx.conn().fetch_optional(&sql).await?;
        tx.commit().await?;
        row.as_ref().map(org_secret_from_row).transpose()
    }

    async fn get_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<Option<OrgSecret>> {
        let sql = Sql::new(format!(
            "SELECT {SECRET_COLUMNS} FROM org_secrets WHERE org_id = $1 AND name = $2"
        ))
        .bind(org)
        .bind(name.as_str());
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(org_secret_from_row)
            .transpose()
    }

    async fn list_secrets(&self, org: &OrgId) -> StoreResult<Vec<OrgSecret>> {
        let sql = Sql::new(format!(
            "SELECT {SECRET_COLUMNS} FROM org_secrets WHERE org_id = $1 ORDER BY name"
        ))
        .bind(org);
        rows(self.read_all(&sql).await?, org_secret_from_row)
    }

    async fn delete_secret(&self, org: &OrgId, name: &SecretName) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM org_secrets WHERE org_id = $1 AND name = $2")
            .bind(org)
            .bind(name.as_str());
        Ok(self.write_one(sql).await? > 0)
    }

    async fn secret_values(&self, org: &OrgId) -> StoreResult<Vec<(SecretName, SecretValue)>> {
        let sql = Sql::new("SELECT name, value FROM org_secrets WHERE org_id = $1 ORDER BY name")
            .bind(org);
        rows(self.read_all(&sql).await?, |row| {
            let name = secret_name_col(row)?;
            let clear = self.unseal(
                row.text("value")?,
                &org_secret_context(org.as_str(), name.as_str()),
                || format!("secret {name} of organization {org}"),
            )?;
            let value = SecretValue::new(clear).map_err(|_| {
                StoreError::Other(format!("secret {name} holds an oversized value"))
            })?;
            Ok((name, value))
        })
    }
}
