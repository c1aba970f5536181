//! The caller's organization and its integrations: what Port's agent and Ocean read
//! and write at start-up (`/v1/organization`, `/v1/integration…`).

use serde_json::{Map, Value};

use super::{Caller, Services};
use crate::error::{ErrorKind, PortError, StoreError};
use crate::id::IntegrationIdentifier;
use crate::integration::{
    self, Integration, MAX_INTEGRATIONS_PER_ORG, OrganizationPatch, organization_json,
};

fn integration_not_found(id: &str) -> PortError {
    PortError::not_found(format!("integration {id}"))
}

/// An identifier from a path: one that cannot exist is simply not found.
fn path_identifier(id: &str) -> Result<IntegrationIdentifier, PortError> {
    IntegrationIdentifier::parse(id).map_err(|_| integration_not_found(id))
}

impl Services {
    /// The caller's organization as `GET /v1/organization` shows it.
    pub async fn organization(&self, caller: &Caller) -> Result<Value, PortError> {
        let org = &caller.org_id;
        let missing = || PortError::not_found(format!("organization {org}"));
        let found = self
            .store
            .get_organization(org)
            .await?
            .ok_or_else(missing)?;
        let settings = self
            .store
            .organization_settings(org)
            .await?
            .ok_or_else(missing)?;
        Ok(organization_json(&found, &settings))
    }

    /// Renames the caller's organization and/or merges settings into its own.
    /// Concurrent patches of settings are last-writer-wins per request.
    pub async fn update_organization(
        &self,
        caller: &Caller,
        patch: &OrganizationPatch,
    ) -> Result<(), PortError> {
        caller.require_admin("change the organization")?;
        let org = &caller.org_id;
        let missing = || PortError::not_found(format!("organization {org}"));
        let stored = self
            .store
            .organization_settings(org)
            .await?
            .ok_or_else(missing)?;
        let settings = patch.apply(&stored)?;
        if !self
            .store
            .update_organization(org, patch.name.as_deref(), settings.as_ref())
            .await?
        {
            return Err(missing());
        }
        Ok(())
    }

    pub async fn get_integration(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Integration, PortError> {
        caller.require_admin("read integrations")?;
        let identifier = path_identifier(id)?;
        self.store
            .get_integration(&caller.org_id, &identifier)
            .await?
            .ok_or_else(|| integration_not_found(id))
    }

    /// Creates an integration from Ocean's body (`installationId` and the keys it
    /// keeps); 409 `identifier_taken` when it exists, 422 beyond
    /// [`MAX_INTEGRATIONS_PER_ORG`].
    pub async fn create_integration(
        &self,
        caller: &Caller,
        mut body: Map<String, Value>,
    ) -> Result<Integration, PortError> {
        caller.require_admin("create integrations")?;
        // `shift_remove` keeps the other keys in the order the client sent them.
        let identifier = match body.shift_remove("installationId") {
            Some(Value::String(id)) => IntegrationIdentifier::parse(&id)
                .map_err(|e| PortError::invalid(format!("body.installationId: {e}")))?,
            Some(_) => return Err(PortError::invalid("body.installationId: must be a string")),
            None => return Err(PortError::invalid("body.installationId: is required")),
        };
        let document = integration::client_fields(body)?;
        integration::check_size(&document)?;
        // Counted before the insert: concurrent creations may pass the bound by as many
        // as run at once, which the connection cap bounds in turn.
        if self.store.count_integrations(&caller.org_id).await? >= MAX_INTEGRATIONS_PER_ORG {
            return Err(PortError::invalid(format!(
                "an organization keeps at most {MAX_INTEGRATIONS_PER_ORG} integrations; delete one first"
            )));
        }
        let now = self.clock.now();
        let created = Integration {
            org_id: caller.org_id.clone(),
            identifier,
            document,
            created_at: now,
            created_by: caller.user_id().to_owned(),
            updated_at: now,
            updated_by: caller.user_id().to_owned(),
        };
        match self.store.create_integration(&created).await {
            Ok(()) => Ok(created),
            Err(StoreError::AlreadyExists(_)) => Err(PortError::new(
                ErrorKind::IdentifierTaken,
                format!("integration {} already exists", created.identifier),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Merges present keys into an integration (`config` as a whole).
    pub async fn patch_integration(
        &self,
        caller: &Caller,
        id: &str,
        patch: Map<String, Value>,
    ) -> Result<Integration, PortError> {
        caller.require_admin("change integrations")?;
        let mut integration = self.get_integration(caller, id).await?;
        integration.merge(patch)?;
        integration.updated_at = self.clock.now();
        integration.updated_by = caller.user_id().to_owned();
        if !self.store.update_integration(&integration).await? {
            return Err(integration_not_found(id));
        }
        Ok(integration)
    }

    pub async fn delete_integration(&self, caller: &Caller, id: &str) -> Result<(), PortError> {
        caller.require_admin("delete integrations")?;
        let identifier = path_identifier(id)?;
        if !self
            .store
            .delete_integration(&caller.org_id, &identifier)
            .await?
        {
            return Err(integration_not_found(id));
        }
        Ok(())
    }
}
